"""Writing an artifact folder atomically: everything goes into a staging folder, then one rename."""
from __future__ import annotations

import json
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path

from edgekiln.runtime.hashing import sha256_file
from edgekiln.runtime.manifest import (MANIFEST_FILE, REPORTS_DIR, SCHEMA_VERSION, Backend, Manifest,
                                       PassRecord, Precision, QuantizationInfo, TargetInfo, artifact_identity)
from edgekiln.runtime.reports import write_report
from edgekiln.targets import TargetProfile

from .diagnostics.plots import write_plots
from .errors import CompileError
from .folders import move_into_place
from .graph_io import graph_io
from .passes.base import MODEL_FILE, BuildState
from .reference_outputs import write_reference
from .tool_versions import tool_versions


def check_output_folder(out_dir: Path, force: bool) -> None:
    """Refuse before any work is done: an existing folder needs --force, and only an artifact
    (or an empty folder) is ever replaced."""
    if not out_dir.exists():
        if out_dir.parent.exists() and not out_dir.parent.is_dir():
            raise CompileError(f"the output's parent {out_dir.parent} is a file, not a folder")
        return
    if not force:
        raise CompileError(f"output folder {out_dir} already exists", hint="pass --force to replace it")
    if not out_dir.is_dir():
        raise CompileError(f"output path {out_dir} is a file, not a folder")
    if any(out_dir.iterdir()) and not (out_dir / MANIFEST_FILE).is_file():
        raise CompileError(f"output folder {out_dir} is not empty and is not an edgekiln artifact; "
                           "refusing to replace it even with --force", hint="choose another -o folder")


def write_artifact(out_dir: Path, *, state: BuildState, records: list[PassRecord], profile: TargetProfile,
                   backend: Backend) -> Manifest:
    staging = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        manifest = _fill(staging, state, records, profile, backend)
        move_into_place(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _fill(staging: Path, state: BuildState, records: list[PassRecord], profile: TargetProfile,
          backend: Backend) -> Manifest:
    import onnx

    shipped = state.lowered or (state.model_path, state.model_path.with_name(state.model_path.name + ".data"))
    for path in shipped:
        if path.is_file():
            shutil.copyfile(path, staging / (MODEL_FILE if path == state.model_path else path.name))
    source = state.source
    longest = _longest_sequence(state)
    tokenizer = source.tokenizer
    if tokenizer is not None and longest is not None and longest < tokenizer.max_length:
        tokenizer = tokenizer.model_copy(update={"max_length": longest})  # fixed-shape backends: the longest bucket
    inputs, outputs = graph_io(onnx.load(str(state.model_path), load_external_data=False))
    reference = write_reference(staging, state, [spec.name for spec in outputs],
                                longest or (tokenizer.max_length if tokenizer else None))
    if source.tokenizer_file is not None:
        shutil.copyfile(source.tokenizer_file, staging / source.tokenizer.file)
        vocab = _vocab_size(staging / source.tokenizer.file)
        tokenizer = tokenizer.model_copy(update={"vocab_size": min(vocab, tokenizer.vocab_size or vocab)})
    quantization = _quantization(state.reports.get("quantize") or state.reports.get("quantize_openvino"))
    files = {str(path.relative_to(staging)): sha256_file(path)
             for path in sorted(staging.rglob("*")) if path.is_file()}
    fields = {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgekiln_version": tool_versions().get("edgekiln", "unknown"),
        "source": source.description,
        "backend": backend,
        "target": TargetInfo(name=profile.name, arch=profile.arch.value, threads=profile.threads,
                             accelerator=profile.accelerator),
        "precision": Precision.INT8 if quantization else _float_precision(state),
        "quantization": quantization,
        "task": source.task,
        "model_file": state.lowered[0].name if state.lowered else MODEL_FILE,
        "inputs": inputs,
        "outputs": outputs,
        "labels": source.labels,
        "tokenizer": tokenizer,
        "reference": reference,
        "passes": tuple(records),
        "tool_versions": tool_versions(),
        "files": files,
    }
    identity = Manifest.model_construct(**fields, artifact_id="").model_dump(mode="json")
    manifest = Manifest(**fields, artifact_id=artifact_identity(identity))
    (staging / MANIFEST_FILE).write_text(json.dumps(manifest.to_json_dict(), indent=2))
    reports = staging / REPORTS_DIR
    reports.mkdir()
    for name, report in state.reports.items():
        (reports / f"{name}.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    if source.notes:
        (reports / "notes.json").write_text(json.dumps({"notes": list(source.notes)}, indent=2))
    write_plots(reports)
    write_report(staging, manifest)
    return manifest


def _vocab_size(tokenizer_file: Path) -> int:
    """Token ids the tokenizer produces lie below this; the runtime checks ids against it."""
    from tokenizers import Tokenizer

    vocab = Tokenizer.from_file(str(tokenizer_file)).get_vocab(with_added_tokens=True)
    return max(vocab.values(), default=0) + 1  # ids need not be dense: get_vocab_size() can be smaller


def _float_precision(state: BuildState) -> Precision:
    lowered = state.reports.get("lower_openvino", {})
    return Precision.BF16 if lowered.get("inference_precision") == "bf16" else Precision.FP32


def _longest_sequence(state: BuildState) -> int | None:
    buckets = state.reports.get("lower_tvm", {}).get("buckets")
    lengths = [sequence for _, sequence in buckets or () if sequence]
    return max(lengths) if lengths else None


def _quantization(report: dict | None) -> QuantizationInfo | None:
    if report is None or report.get("chosen") in (None, "float"):
        return None
    return QuantizationInfo(mode=report["chosen"], kept_float=tuple(report["excluded_nodes"]),
                            accuracy_drop_points=report["accuracy_drop"])
