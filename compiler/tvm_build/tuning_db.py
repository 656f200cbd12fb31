"""MetaSchedule's JSON database in the build cache, and its portable export (`edgekiln tune-db`).

The database is two files of JSON lines (TVM's JSONDatabase): `database_workload.json` holds one
workload a line, `[structural hash, serialized module]`; `database_tuning_record.json` one tuning
record a line, `[workload line index, [trace, run seconds, target, argument info]]`. An export is
one JSON document holding the target, the TVM version and the records with the workloads they use
(re-indexed); an import appends the workloads this database lacks, then the records it lacks, each
file replaced whole through a temporary file, workloads first, so the database is never left
referring to a workload it does not hold. No pickle: everything is JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from ..errors import CompileError

WORKLOADS = "database_workload.json"
RECORDS = "database_tuning_record.json"
FORMAT = "edgekiln-tune-db"
FORMAT_VERSION = 1


class TuneDbFile(BaseModel):
    """An exported tuning database (the JSON document `tune-db export` writes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str
    format_version: int
    tvm: str
    profile: str
    target: dict
    workloads: list[tuple[str, str]]  # [structural hash, serialized module], as in the workload file
    records: list[tuple[int, list]]  # [index into `workloads`, the rest of TVM's record]

    @field_validator("format")
    @classmethod
    def _ours(cls, value):
        if value != FORMAT:
            raise ValueError(f"format is {value!r}, not {FORMAT!r}")
        return value

    @field_validator("format_version")
    @classmethod
    def _known(cls, value):
        if value != FORMAT_VERSION:
            raise ValueError(f"format version {value} is not {FORMAT_VERSION}")
        return value

    @model_validator(mode="after")
    def _indices(self):
        for index, body in self.records:
            if not 0 <= index < len(self.workloads):
                raise ValueError(f"a record refers to workload {index}, but the file holds {len(self.workloads)}")
            if len(body) != 4:
                raise ValueError(f"a record has {len(body)} fields, expected 4 (trace, run seconds, target, args)")
        return self


def tvm_version() -> str:
    import tvm

    return tvm.__version__


def read_lines(path: Path) -> list[Any]:
    """The JSON values of a database file, one a line (none when the file is absent)."""
    if not path.is_file():
        return []
    values = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            values.append(json.loads(line))
        except json.JSONDecodeError:
            raise CompileError(
                f"the tuning database {path} is damaged (line {number} is not JSON)",
                hint=f"delete {path.parent} to start it again",
            ) from None
    return values


def record_count(folder: Path) -> int:
    return len(read_lines(folder / RECORDS))


def fingerprint(folder: Path) -> str | None:
    """sha256 of the database's records (what applying it depends on); None when it has none."""
    path = folder / RECORDS
    if not path.is_file():
        return None
    content = path.read_bytes()
    return hashlib.sha256(content).hexdigest() if content.strip() else None


def export_database(folder: Path, profile: str, target: dict) -> TuneDbFile:
    """The database's records with the workloads they use, re-indexed from 0."""
    workloads, records = read_lines(folder / WORKLOADS), read_lines(folder / RECORDS)
    if not records:
        raise CompileError(
            f"the tuning database for {profile} ({target}) holds no records",
            hint=f"tune first: edgekiln compile MODEL --target {profile} --backend tvm --tune-trials N "
            "(on the board itself, or from here with --tune-remote HOST:PORT for a board's profile)",
        )
    new_index: dict[int, int] = {}
    kept, out = [], []
    for index, body in records:
        if index not in new_index:
            if not 0 <= index < len(workloads):
                raise CompileError(
                    f"the tuning database {folder} is damaged (a record refers to a missing workload)",
                    hint=f"delete {folder} to start it again",
                )
            new_index[index] = len(kept)
            kept.append(tuple(workloads[index]))
        out.append((new_index[index], body))
    return TuneDbFile(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        tvm=tvm_version(),
        profile=profile,
        target=target,
        workloads=kept,
        records=out,
    )


def parse_export(text: str, where: str) -> TuneDbFile:
    """A validated export, or one CompileError naming what is wrong with it."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
        raise CompileError(
            f"{where} is not a tuning database export (not JSON)", hint="give a file from `edgekiln tune-db export`"
        ) from None
    try:
        parsed = TuneDbFile.model_validate(data)
    except ValidationError as exc:
        error = exc.errors()[0]
        place = ".".join(str(part) for part in error["loc"]) or "(top level)"
        raise CompileError(
            f"{where} is not a valid tuning database export: {place}: {error['msg']}",
            hint="give a file from `edgekiln tune-db export`",
        ) from None
    if parsed.tvm != tvm_version():
        raise CompileError(
            f"{where} was tuned with TVM {parsed.tvm}, this machine has TVM {tvm_version()}: the records "
            "do not carry over between TVM versions",
            hint=f"install apache-tvm=={parsed.tvm} here, or export again from a machine with TVM {tvm_version()}",
        )
    return parsed


def merge(folder: Path, exported: TuneDbFile) -> tuple[int, int]:
    """Add the export's records this database lacks; (records added, records now held)."""
    workloads, records = read_lines(folder / WORKLOADS), read_lines(folder / RECORDS)
    position = {_key(workload): index for index, workload in enumerate(workloads)}
    added_workloads = []
    remap = {}
    for index, workload in enumerate(exported.workloads):
        key = _key(workload)
        if key not in position:
            position[key] = len(workloads) + len(added_workloads)
            added_workloads.append(list(workload))
        remap[index] = position[key]
    held = {_key([index, body]) for index, body in records}
    added_records = []
    for index, body in exported.records:
        record = [remap[index], body]
        if _key(record) not in held:
            held.add(_key(record))
            added_records.append(record)
    folder.mkdir(parents=True, exist_ok=True)
    if added_workloads:  # first: the new records refer to these lines
        _replace(folder / WORKLOADS, workloads + added_workloads)
    if added_records:
        _replace(folder / RECORDS, records + added_records)
    return len(added_records), len(records) + len(added_records)


def _key(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _replace(path: Path, lines: list) -> None:
    """Write `lines` as JSON lines to a temporary file beside `path`, then rename it over `path`."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            for line in lines:
                stream.write(json.dumps(line, separators=(",", ":")) + "\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
