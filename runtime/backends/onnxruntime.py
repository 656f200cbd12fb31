"""ONNX Runtime backend: runs the artifact's ONNX file with the CPU or CUDA execution provider."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import ArtifactError, BackendUnavailableError
from ..manifest import Accelerator, Manifest
from ..paths import inside
from .base import FROM_BYTES_LIMIT, BackendOptions, Device, checked_bytes
from .spec import BackendSpec, QuantizerSpec

_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
# ONNX Runtime 1.32's CPU SkipLayerNormalization kernel is ~6x slower than the Add + LayerNormalization
# it fuses (1 thread, [1, 128, 384]: 248 vs 40 us; all-MiniLM-L6-v2 pruned int8 at 24 tokens 3.0 -> 1.9 ms,
# benchmarks/README.md), so CPU sessions keep the two nodes; CUDA keeps every fusion.
CPU_DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)


class OnnxRuntimeSession:
    name = "onnxruntime"

    def __init__(self, session, output_names: list[str]) -> None:
        self._session = session
        self._output_names = output_names
        self.providers = session.get_providers()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self._session.run(self._output_names, feeds)
        return dict(zip(self._output_names, values))


def open_session(folder: Path, manifest: Manifest, options: BackendOptions) -> OnnxRuntimeSession:
    import onnxruntime as ort

    settings = ort.SessionOptions()
    settings.intra_op_num_threads = options.threads
    settings.inter_op_num_threads = 1
    settings.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    settings.log_severity_level = 3
    providers = _providers(manifest, options.device, ort.get_available_providers())
    model = _model(folder, manifest, options.verified)
    try:
        session = ort.InferenceSession(
            model,
            settings,
            providers=providers,
            disabled_optimizers=list(CPU_DISABLED_OPTIMIZERS) if providers == [_CPU] else None,
        )
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise ArtifactError(
            f"onnxruntime could not load {manifest.model_file}: {exc}",
            hint="recompile the artifact with this edgekiln version",
        ) from None
    _check_io(session, manifest)
    return OnnxRuntimeSession(session, [spec.name for spec in manifest.outputs])


def _model(folder: Path, manifest: Manifest, verified: bool) -> str | bytes:
    """A one-file model up to 256 MiB as the bytes whose hash is checked here, so that a file swapped after
    the artifact's check (a race) is not what runs; a larger model, or one with external weights, loads by
    path (ONNX Runtime would hold the bytes and its own copy at once)."""
    path = inside(folder, manifest.model_file)
    if opened_files(folder, manifest) or path.stat().st_size > FROM_BYTES_LIMIT:
        return str(path)
    return checked_bytes(path, manifest.model_file, manifest.files, verified)


def _check_io(session, manifest: Manifest) -> None:
    """The manifest's inputs and outputs (names and ranks) must be the model's, or runs would fail
    inside onnxruntime."""
    for what, declared, actual in (
        ("inputs", manifest.inputs, session.get_inputs()),
        ("outputs", manifest.outputs, session.get_outputs()),
    ):
        ours = {spec.name: len(spec.shape) for spec in declared}
        theirs = {node.name: len(node.shape) for node in actual}
        if ours != theirs:
            raise ArtifactError(
                f"the manifest's {what} {ours} (name: rank) are not {manifest.model_file}'s {theirs}",
                hint="recompile the artifact",
            )


def _providers(manifest: Manifest, device: Device, available: list[str]) -> list[str]:
    wants_cuda = device is Device.CUDA or (device is Device.AUTO and manifest.target.accelerator is Accelerator.CUDA)
    if not wants_cuda:
        return [_CPU]
    if _CUDA not in available:
        raise BackendUnavailableError(
            f"{'device cuda was asked for' if device is Device.CUDA else f'artifact targets {manifest.target.name} (CUDA)'}"
            f" but onnxruntime here has no CUDA provider (available: {', '.join(available)})",
            hint="install onnxruntime-gpu on a machine with an NVIDIA GPU, or load with device='cpu'",
        )
    return [_CUDA, _CPU]


def opened_files(folder: Path, manifest: Manifest) -> list[str]:
    """Besides the model: its external weights, where the compiler wrote them."""
    data = f"{manifest.model_file}.data"
    return [data] if (folder / data).exists() else []


_QUANTIZER = "edgekiln.compiler.passes.quantize:make_quantizer"
SPEC = BackendSpec(
    name="onnxruntime",
    description="ONNX Runtime: the ONNX file as it is, CPU or CUDA; int8 dynamic or static (QDQ)",
    runtime="edgekiln.runtime.backends.onnxruntime:open_session",
    opened_files="edgekiln.runtime.backends.onnxruntime:opened_files",
    quantizers={
        "dynamic": QuantizerSpec(_QUANTIZER, needs_calibration=False),
        "static": QuantizerSpec(_QUANTIZER, needs_calibration=True),
        "auto": QuantizerSpec(_QUANTIZER, needs_calibration=False),
    },
    profiler="edgekiln.runtime.profile.onnxruntime:profile",
    precisions=("fp32",),
    emulation_wheels=("onnxruntime",),
)
