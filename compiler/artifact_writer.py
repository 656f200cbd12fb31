"""Writing an artifact folder atomically: everything goes into a staging folder, then one rename."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath

from edgekiln.runtime.artifact import read_manifest
from edgekiln.runtime.errors import ArtifactError
from edgekiln.runtime.hashing import sha256_file
from edgekiln.runtime.manifest import (
    MANIFEST_FILE,
    REPORTS_DIR,
    SCHEMA_VERSION,
    Manifest,
    PassRecord,
    Precision,
    QuantizationInfo,
    TargetInfo,
    artifact_identity,
)
from edgekiln.runtime.reports import write_report
from edgekiln.runtime.reports.schema import QuantizationReport, parse_report
from edgekiln.targets import TargetProfile

from .diagnostics.plots import write_plots
from .errors import CompileError
from .folders import check_parent, move_into_place
from .graph_io import graph_io, load_graph, quantized_ops
from .onnx_external import copy_model
from .padding_check import recorded_padding
from .passes.base import MODEL_FILE, BuildState
from .recipe import RECIPE_FILE, Recipe
from .reference_outputs import write_reference
from .tool_versions import tool_versions

SIGNATURE_FILE = "signature.json"  # written beside the manifest when an artifact is signed


def check_output_folder(out_dir: Path, force: bool) -> None:
    """Refuse before any work is done: an existing folder needs --force, and only an artifact
    (or an empty folder) is ever replaced."""
    check_parent(out_dir)
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if not out_dir.is_dir():  # --force never replaces a file
        raise CompileError(f"output path {out_dir} is a file, not a folder", hint="choose another -o folder")
    if not force:
        raise CompileError(f"output folder {out_dir} already exists", hint="pass --force to replace it")
    reason = replacement_problem(out_dir)
    if reason is not None:
        raise CompileError(
            f"output folder {out_dir} {reason}; refusing to replace it even with --force",
            hint="choose another -o folder, or remove it yourself",
        )


def replacement_problem(folder: Path) -> str | None:
    """None when `folder` is empty or provably an edgekiln artifact: a schema-valid manifest whose
    `files` (each matching its hash), plus the manifest, a signature and the files in reports/, are
    all it holds. Otherwise why not, as words that follow the folder's name."""
    if not folder.is_dir() or folder.is_symlink():
        return "is not a folder"
    if not any(folder.iterdir()):
        return None
    if not (folder / MANIFEST_FILE).is_file():
        return f"is not empty and is not an edgekiln artifact (it has no {MANIFEST_FILE})"
    try:
        manifest = read_manifest(folder)
    except ArtifactError as exc:
        return f"is not an edgekiln artifact ({exc.message})"
    for relative, kind in _entries(folder):
        if kind != "a file" or not _written_by_edgekiln(relative, manifest):
            return f"is not an edgekiln artifact alone: it also holds {kind} {relative} that its manifest does not list"
    for relative, expected in manifest.files.items():
        path = folder / relative
        if path.is_file() and sha256_file(path) != expected:
            return f"holds {relative}, which differs from its manifest hash (changed after the build)"
    return None


def _entries(folder: Path):
    """(relative path, kind) of everything under `folder` that a replacement would lose; symlinks are
    not followed, and a folder counts through what it holds (or as itself when empty)."""
    for root, dirs, files in os.walk(folder):
        base = Path(root)
        for name in sorted(dirs + files):
            path = base / name
            relative = path.relative_to(folder).as_posix()
            if path.is_symlink():
                yield relative, "a symlink"
            elif path.is_dir():
                if not any(path.iterdir()):
                    yield relative, "an empty folder"
            elif path.is_file():
                yield relative, "a file"
            else:
                yield relative, "a special file"


def _written_by_edgekiln(relative: str, manifest: Manifest) -> bool:
    if relative in manifest.files or relative in (MANIFEST_FILE, SIGNATURE_FILE):
        return True
    return PurePosixPath(relative).parent == PurePosixPath(REPORTS_DIR)


def _precision(recipe: Recipe, quantization, model) -> Precision:
    """int8 when quantized, or when an fp32 build's file is already int8 (QDQ or integer operators);
    else the recipe's (bf16 stays bf16: OpenVINO runs the rest of such a file in bf16)."""
    if quantization or (recipe.precision is Precision.FP32 and quantized_ops(model)):
        return Precision.INT8
    return recipe.precision


def write_artifact(
    out_dir: Path,
    *,
    state: BuildState,
    records: list[PassRecord],
    profile: TargetProfile,
    backend: str,
    recipe: Recipe,
    force: bool,
) -> Manifest:
    """Fill a staging folder, then rename it to `out_dir`. A folder found at `out_dir` then is
    replaced only with `force` and only if it is (still) an artifact; with `force=False` (what
    compile() passes without --force) nothing there is ever replaced."""
    staging = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        manifest = _fill(staging, state, records, profile, backend, recipe)
        check_plugin_artifact(staging, out_dir, backend, recipe.fidelity.max_abs_diff)
        move_into_place(staging, out_dir, replaceable=replacement_problem if force else None)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def check_plugin_artifact(staging: Path, out_dir: Path, backend: str, max_abs_diff: float) -> None:
    """A plugin backend's artifact, opened with the plugin's runtime and run on the reference inputs
    before it is moved into place (the built-in lowerings check their own output as they build): a
    float artifact within the recipe's fidelity limit, a quantized one by `verify`'s cosine."""
    from edgekiln.runtime.backends import backend_spec, is_builtin
    from edgekiln.runtime.errors import EdgekilnError
    from edgekiln.runtime.verify import verify_artifact

    if is_builtin(backend) or not backend_spec(backend).checked_at_compile:
        return
    try:
        report = verify_artifact(staging, threads=1)
    except EdgekilnError as exc:
        raise CompileError(
            f"the {backend} artifact cannot run here: {exc.message.replace(str(staging), str(out_dir))}",
            hint=f"{exc.hint}; a plugin whose device the build machine lacks sets checked_at_compile=False",
        ) from None
    if "max_abs_diff" in report["threshold"]:  # float: the recipe's [fidelity] limit, as the built-ins'
        report["threshold"] = {"max_abs_diff": max_abs_diff}
        report["passed"] = report["max_abs_diff"] <= max_abs_diff
    if not report["passed"]:
        limit = ", ".join(f"{key} {value}" for key, value in report["threshold"].items())
        raise CompileError(
            f"backend plugin {backend!r} computes other outputs than the model: max abs diff "
            f"{report['max_abs_diff']:.3g}, min cosine {report['min_cosine']:.6f} (limit {limit})",
            hint="a fault of the plugin: report it to its authors",
        )


def _fill(
    staging: Path, state: BuildState, records: list[PassRecord], profile: TargetProfile, backend: str, recipe: Recipe
) -> Manifest:
    for path in state.lowered:
        shutil.copyfile(path, staging / path.name)
    if not state.lowered:  # model.onnx, and model.onnx.data beside it when the weights are external
        copy_model(state.model_path, staging / MODEL_FILE)
    source = state.source
    longest = _longest_sequence(state)
    tokenizer = source.tokenizer
    if tokenizer is not None and longest is not None and longest < tokenizer.max_length:
        tokenizer = tokenizer.model_copy(update={"max_length": longest})  # fixed-shape backends: the longest bucket
    graph = load_graph(state.model_path)  # once: its inputs and outputs, and whether it is already int8
    inputs, outputs = graph_io(graph)
    reference = write_reference(
        staging, state, [spec.name for spec in outputs], longest or (tokenizer.max_length if tokenizer else None)
    )
    if source.image is not None:  # the device's decode and preprocessing, checked by verify too
        from edgekiln.runtime.images.reference import write_image_reference

        from .evaluate.predictors import image_encoder

        write_image_reference(staging, image_encoder(source.image))
    if source.tokenizer_file is not None:
        shutil.copyfile(source.tokenizer_file, staging / source.tokenizer.file)
        vocab = _vocab_size(staging / source.tokenizer.file)
        tokenizer = tokenizer.model_copy(update={"vocab_size": min(vocab, tokenizer.vocab_size or vocab)})
        if recorded_padding(state.reports).get(
            "sensitive"
        ):  # its answers would depend on the batch: the runtime runs one text per call
            tokenizer = tokenizer.model_copy(update={"pad_sensitive": True})
    (staging / RECIPE_FILE).write_text(recipe.to_toml())  # hashed with the rest: the exact build
    quantization = _quantization(state.reports)
    files = {str(path.relative_to(staging)): sha256_file(path) for path in sorted(staging.rglob("*")) if path.is_file()}
    fields = {
        "schema_version": SCHEMA_VERSION,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "edgekiln_version": tool_versions().get("edgekiln", "unknown"),
        "source": source.description,
        "backend": backend,
        "target": TargetInfo(
            name=profile.name, arch=profile.arch.value, threads=profile.threads, accelerator=profile.accelerator
        ),
        "precision": _precision(recipe, quantization, graph),
        "quantization": quantization,
        "task": source.task,
        "model_file": state.lowered[0].name if state.lowered else MODEL_FILE,
        "inputs": inputs,
        "outputs": outputs,
        "labels": source.labels,
        "tokenizer": tokenizer,
        "image": source.image,
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


def _longest_sequence(state: BuildState) -> int | None:
    buckets = state.reports.get("lower_tvm", {}).get("details", {}).get("buckets")
    lengths = [sequence for _, sequence in buckets or () if sequence]
    return max(lengths) if lengths else None


def _quantization(reports) -> QuantizationInfo | None:
    typed = [report for report in map(parse_report, reports.values()) if isinstance(report, QuantizationReport)]
    if not typed or typed[-1].chosen == "float":
        return None
    report = typed[-1]
    return QuantizationInfo(
        mode=report.chosen, kept_float=report.excluded_nodes, accuracy_drop_points=report.accuracy_drop
    )
