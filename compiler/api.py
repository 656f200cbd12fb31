"""`edgekiln.compiler.compile`: model + target profile -> verified artifact folder."""
from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import dataclass, replace
from types import MappingProxyType
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from edgekiln.runtime.manifest import Backend, Manifest, Precision, Task
from edgekiln.targets import TargetProfile, load_profile
from pydantic import ValidationError

from .artifact_writer import check_output_folder, write_artifact
from .cache import PassCache, default_cache_dir
from .data import Dataset
from .errors import CompileError
from .passes.base import BuildState, Pass
from .passes.check_onnx import CheckOnnx
from .passes.export_onnx import ExportConfig, Exporter, ExportOnnx
from .passes.lower_openvino import LowerOpenVino, LowerOpenVinoConfig
from .passes.quantize_openvino import QuantizeOpenVino, QuantizeOpenVinoConfig
from .passes.ort_optimize import OrtOptimize
from .passes.quantize import BudgetError, QuantizeOrt, QuantizePassConfig
from .passes.verify_fidelity import FidelityConfig, VerifyFidelity
from .passes.lower_tvm_setup import tvm_lowering
from .pipeline import run_passes
from .pruning.config import PruneConfig, RecoveryConfig
from .pruning.entry import prune_model
from .quantization.config import CalibrationMethod, QuantMode, types_for_profile
from .quantization.inputs import quantization_inputs
from .sources import Pooling, resolve_source

IMPLEMENTED_BACKENDS = (Backend.ONNXRUNTIME, Backend.OPENVINO, Backend.TVM)
# Which backends can run each quantization mode (OpenVINO's NNCF is static, with calibration data).
# TVM compiles float models only.
QUANTIZING_BACKENDS = {QuantMode.NONE: IMPLEMENTED_BACKENDS, QuantMode.DYNAMIC: (Backend.ONNXRUNTIME,),
                       QuantMode.STATIC: (Backend.ONNXRUNTIME, Backend.OPENVINO),
                       QuantMode.AUTO: (Backend.ONNXRUNTIME, Backend.OPENVINO)}


@dataclass(frozen=True)
class CompileResult:
    path: Path
    manifest: Manifest
    notes: tuple[str, ...]


def compile(model: Any, target: str | TargetProfile = "host", output: str | os.PathLike = "edgekiln-out/model", *,
            backend: str | Backend | None = None, force: bool = False, task: str | Task | None = None,
            pooling: str | Pooling | None = None, example_inputs: Any = None,
            input_names: Sequence[str] | None = None, output_names: Sequence[str] | None = None,
            dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
            exporter: str | Exporter = Exporter.AUTO, opset: int = 18,
            fidelity: FidelityConfig | None = None, quantize: str | QuantMode = QuantMode.NONE,
            calibration: str | Dataset | None = None, calibration_samples: int = 128,
            calibration_method: str | CalibrationMethod = CalibrationMethod.MINMAX,
            accuracy_budget: float | None = None, eval_data: str | Dataset | None = None,
            tune_trials: int = 0, sequence_buckets: Sequence[int] | None = None,
            prune: PruneConfig | None = None, recover: RecoveryConfig | None = None,
            train_data: str | Dataset | None = None, precision: str | Precision = Precision.FP32,
            cache: bool = True, cache_dir: str | os.PathLike | None = None,
            progress: Callable[[str], None] | None = None) -> CompileResult:
    """Compile `model` (a Hugging Face folder, an .onnx file, or a torch.nn.Module with
    `example_inputs`) for `target` into the artifact folder `output`; optionally quantize it to
    int8 within `accuracy_budget` points on `eval_data`. TVM compiles one library per shape bucket
    (the profile's, or `sequence_buckets`) and tunes kernels with `tune_trials` MetaSchedule trials.
    `prune` removes heads/FFN neurons (or conv channels) first, `recover` fine-tunes the pruned model
    on `train_data` with distillation from the unpruned one. `precision` bf16 runs OpenVINO's float
    kernels in bf16 where the CPU has AVX-512 BF16 or AMX."""
    progress = progress or (lambda message: None)
    out_dir = Path(output).expanduser().resolve()
    check_output_folder(out_dir, force)
    profile = target if isinstance(target, TargetProfile) else load_profile(str(target))
    quant = _enum(QuantMode, quantize, "quantization mode")
    usable = QUANTIZING_BACKENDS[quant]
    if quant is QuantMode.AUTO and calibration is None:
        usable = (Backend.ONNXRUNTIME,)  # without calibration data only dynamic int8 is possible
    chosen, notes = choose_backend(profile, _enum(Backend, backend, "backend"), usable)
    _check_request(profile, quant, accuracy_budget, eval_data, calibration)
    precision = _check_precision(profile, chosen, quant, _enum(Precision, precision, "precision"))
    if sequence_buckets is not None:
        profile = _with_buckets(profile, sequence_buckets)
    cache_root = Path(cache_dir or default_cache_dir())
    tvm_pass = tvm_lowering(profile, tune_trials, cache_root) if chosen is Backend.TVM else None
    if tvm_pass is None and tune_trials:
        raise CompileError("--tune-trials applies to the tvm backend", hint="pass --backend tvm with it")
    if recover is not None and prune is None:
        raise CompileError("--recover fine-tunes after pruning", hint="pass --prune-flops (or -heads/-ffn) with it")
    build_dir = out_dir.parent / f".{out_dir.name}.build-{uuid.uuid4().hex[:8]}"
    build_dir.mkdir(parents=True)
    try:
        store = PassCache(None if not cache else cache_root, build_dir)
        reports, records = {}, []
        if prune is not None:
            model, reports["pruning"], record = _prune_first(model, example_inputs, profile, prune, recover, store,
                                                             progress, train_data, eval_data, calibration)
            records.append(record)
        source = resolve_source(model, work_dir=build_dir, task=_enum(Task, task, "task"),
                                pooling=_enum(Pooling, pooling, "pooling"), example_inputs=example_inputs,
                                input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes)
        passes = _pass_chain(source.torch is not None, ExportConfig(exporter=_enum(Exporter, exporter, "exporter"),
                                                                     opset=opset), fidelity)
        lowering = LowerOpenVino(LowerOpenVinoConfig(precision=precision.value)) if chosen is Backend.OPENVINO \
            else tvm_pass
        passes += [lowering] if lowering is not None else []
        start = BuildState(source=source)
        if quant is not QuantMode.NONE:
            method = _enum(CalibrationMethod, calibration_method, "calibration method")
            passes.append(_quantize_pass(profile, chosen, quant, method, accuracy_budget))
            start = quantization_inputs(source, calibration, calibration_samples, eval_data)
        state, chain = _run(passes, replace(start, reports=MappingProxyType(reports)), store, progress, out_dir)
        manifest = write_artifact(out_dir, state=state, records=records + chain, profile=profile, backend=chosen)
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    return CompileResult(out_dir, manifest, tuple(notes) + source.notes)


def _prune_first(model, example_inputs, profile: TargetProfile, prune: PruneConfig, recover, store: PassCache,
                 progress, train_data, eval_data, calibration):
    """(the pruned model or folder, its report, its manifest record); widths rounded for the target."""
    if prune.multiple_of is None:
        prune = prune.model_copy(update={"multiple_of": profile.prune_multiple})
    return prune_model(model, example_inputs, prune, recover, store=store, say=progress,
                       data={"train": train_data, "dev": eval_data, "calibration": calibration})


def _check_precision(profile: TargetProfile, backend: Backend, quant: QuantMode, precision: Precision) -> Precision:
    if precision is Precision.FP32:
        return precision
    if precision is not Precision.BF16:
        raise CompileError(f"precision {precision.value} is not a float precision edgekiln compiles",
                           hint="int8 comes with --quantize; for reduced float use --precision bf16 (OpenVINO)")
    if backend is not Backend.OPENVINO or quant is not QuantMode.NONE:
        raise CompileError("--precision bf16 is OpenVINO's float mode",
                           hint="use --backend openvino without --quantize")
    if Precision.BF16 not in profile.precisions:
        raise CompileError(f"target {profile.name} does not list bf16 (it needs AVX-512 BF16 or AMX)",
                           hint="use --target host on such a CPU, or a profile that lists bf16")
    return precision


def _with_buckets(profile: TargetProfile, buckets: Sequence[int]) -> TargetProfile:
    try:
        return TargetProfile.model_validate({**profile.model_dump(), "sequence_buckets": tuple(buckets)})
    except ValidationError as exc:
        raise CompileError(f"bad sequence buckets {list(buckets)}: {exc.errors()[0]['msg']}",
                           hint="give increasing positive lengths, e.g. --sequence-buckets 32,64,128") from None


def _check_request(profile: TargetProfile, quant: QuantMode, budget: float | None, eval_data, calibration) -> None:
    """Refuse contradictory requests before any work is done."""
    if Precision.FP32 not in profile.precisions:
        raise CompileError(f"target {profile.name} does not list fp32 among its precisions "
                           f"{[p.value for p in profile.precisions]}; lower precisions come with quantization")
    if quant is not QuantMode.NONE and Precision.INT8 not in profile.precisions:
        raise CompileError(f"target {profile.name} does not support int8", hint="compile without --quantize")
    if budget is not None and (quant is QuantMode.NONE or eval_data is None):
        raise CompileError("--accuracy-budget applies to quantization and needs labelled data",
                           hint="pass --quantize and --eval-data DEV with it")
    if quant is QuantMode.STATIC and calibration is None:
        raise CompileError("--quantize static needs calibration data", hint="pass --calibration DATA")


def _quantize_pass(profile: TargetProfile, backend: Backend, mode: QuantMode, method: CalibrationMethod,
                   budget: float | None) -> Pass:
    """Settings from the target: its integer types, longest sequence bucket and thread count."""
    common = dict(mode=mode, accuracy_budget=budget, bench_sequence=profile.sequence_buckets[-1],
                  threads=min(profile.threads, os.cpu_count() or 1))
    if backend is Backend.OPENVINO:
        return QuantizeOpenVino(QuantizeOpenVinoConfig(**common))
    return QuantizeOrt(QuantizePassConfig(calibration_method=method, **common, **types_for_profile(profile)))


def _run(passes: list[Pass], start: BuildState, store: PassCache, progress, out_dir: Path):
    try:
        return run_passes(passes, start, store, progress)
    except BudgetError as exc:  # keep the best attempts' report beside the (unwritten) output
        kept = out_dir.parent / f"{out_dir.name}.quantization-failed.json"
        kept.write_text(json.dumps(exc.report, indent=2))
        raise CompileError(f"{exc.message}; the attempts are described in {kept}", hint=exc.hint) from None


def choose_backend(profile: TargetProfile, requested: Backend | None,
                   usable: tuple[Backend, ...] = IMPLEMENTED_BACKENDS) -> tuple[Backend, list[str]]:
    """The requested backend, else the target's first preferred one among those `usable` for the job."""
    if requested is not None and requested not in IMPLEMENTED_BACKENDS:
        raise CompileError(f"the {requested.value} backend is not implemented in this edgekiln version",
                           hint=f"use --backend {' or '.join(b.value for b in IMPLEMENTED_BACKENDS)}")
    if requested is not None and requested not in usable:
        raise CompileError(f"the {requested.value} backend cannot run this quantization mode "
                           "(OpenVINO quantizes statically, from calibration data)",
                           hint=f"use --backend {usable[0].value}, or --quantize static with --calibration DATA")
    if requested is not None:
        notes = [] if requested in profile.preferred_backends else \
            [f"{requested.value} is not among {profile.name}'s preferred backends"]
        return requested, notes
    for candidate in profile.preferred_backends:
        if candidate in usable:
            skipped = profile.preferred_backends[:profile.preferred_backends.index(candidate)]
            return candidate, [f"preferred backend {b.value} cannot do this job; using {candidate.value}"
                               for b in skipped]
    raise CompileError(f"none of {profile.name}'s preferred backends "
                       f"{[b.value for b in profile.preferred_backends]} can do this job",
                       hint=f"pass --backend {usable[0].value}")


def _pass_chain(from_torch: bool, export: ExportConfig, fidelity: FidelityConfig | None) -> list[Pass]:
    first: Pass = ExportOnnx(export) if from_torch else CheckOnnx()
    return [first, OrtOptimize(), VerifyFidelity(fidelity or FidelityConfig())]


def _enum(kind, value, what: str):
    if value is None or isinstance(value, kind):
        return value
    try:
        return kind(value)
    except ValueError:
        raise CompileError(f"unknown {what} {value!r}", hint=f"use one of: {', '.join(k.value for k in kind)}") from None
