"""Running a chain of passes: preconditions, cache look-up, records for the manifest."""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

from edgekiln.runtime.errors import EdgekilnError
from edgekiln.runtime.hashing import sha256_file, sha256_json
from edgekiln.runtime.manifest import PassRecord

from .cache import PassCache
from .errors import CompileError
from .gc_scope import older_objects_frozen
from .passes.base import MODEL_FILE, BuildState, Pass
from .tool_versions import tool_versions

REPORT_FILE = "report.json"
Progress = Callable[[str], None]


def run_passes(
    passes: list[Pass], state: BuildState, cache: PassCache, progress: Progress = lambda message: None
) -> tuple[BuildState, list[PassRecord]]:
    records, scratch = [], []
    for step in passes:
        step.check_preconditions(state)
        input_sha = step.input_key(state)
        config = step.config.model_dump(mode="json")
        key = sha256_json(
            {"pass": step.name, "version": step.version, "config": config, "input": input_sha, "tools": tool_versions()}
        )
        progress(f"{step.name} …")
        started = time.perf_counter()
        folder, cached = cache.run(
            key, lambda out_dir, step=step, state=state: _run_one(step, state, out_dir), say=progress
        )
        seconds = time.perf_counter() - started
        report = json.loads((folder / REPORT_FILE).read_text())
        model_path = folder / MODEL_FILE if step.changes_model else state.model_path
        lowered = _lowered_files(step, folder) or state.lowered
        state = replace(
            state,
            model_path=model_path,
            lowered=lowered,
            reports=MappingProxyType({**state.reports, step.name: report}),
        )
        output_sha = (
            state.model_sha256()
            if not step.lowers_to
            else sha256_json({path.name: sha256_file(path) for path in lowered})
        )
        records.append(
            PassRecord(
                name=step.name,
                config=config,
                input_sha256=input_sha,
                output_sha256=output_sha,
                seconds=round(seconds, 3),
                cached=cached,
            )
        )
        progress(f"{step.name} done in {seconds:.1f} s{' (cached)' if cached else ''}")
        if cache.root is None:
            scratch = _drop_unreferenced([*scratch, folder], state)
    return state, records


def _drop_unreferenced(folders: list[Path], state: BuildState) -> list[Path]:
    """With caching off each pass writes a fresh folder: one the build state no longer points into is
    deleted at once (a 2.4 GB model otherwise leaves a copy per pass on disk until the build ends)."""
    live = {path.parent for path in (state.model_path, *state.lowered) if path is not None}
    for folder in folders:
        if folder not in live:
            shutil.rmtree(folder, ignore_errors=True)
    return [folder for folder in folders if folder in live]


def _lowered_files(step: Pass, folder) -> tuple:
    """A lowering pass's declared files (the runtime's entry file first), then any others it wrote
    (TVM writes one library per shape bucket)."""
    if not step.lowers_to:
        return ()
    declared = [folder / name for name in step.lowers_to]
    extra = sorted(
        path
        for path in folder.iterdir()
        if path.is_file()
        and not path.name.startswith(".")  # the cache's own markers
        and path.name not in (*step.lowers_to, REPORT_FILE, MODEL_FILE)
    )
    return tuple(declared + extra)


def _run_one(step: Pass, state: BuildState, out_dir) -> None:
    plugin = not type(step).__module__.startswith("edgekiln.")
    with older_objects_frozen():  # the collector walks the pass's own objects only (gc_scope)
        try:
            report = step.run(state, out_dir)
        except Exception as exc:
            if not plugin or isinstance(exc, EdgekilnError):
                raise
            raise CompileError(  # a plugin's fault, named as such rather than as edgekiln's internal error
                f"pass {step.name} (plugin module {type(step).__module__}) failed: {type(exc).__name__}: {exc}",
                hint="a fault of the plugin (or its toolchain): report it to its authors",
            ) from None
    promised = ((MODEL_FILE,) if step.changes_model else ()) + step.lowers_to
    missing = [name for name in promised if not (out_dir / name).is_file()]
    if missing:
        who = f"plugin pass {step.name} ({type(step).__module__})" if plugin else f"internal: pass {step.name}"
        raise CompileError(f"{who} promised {missing} but did not write them")
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2, sort_keys=True))
