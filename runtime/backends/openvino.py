"""OpenVINO backend: compiles the artifact's IR for the CPU with the target's thread count and a
latency hint, in the artifact's precision: f32 unless it was compiled for bf16 (OpenVINO would
otherwise pick bf16 by itself on CPUs that have it), caching the compiled blob so the second load
is fast."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ArtifactError, BackendUnavailableError
from ..manifest import Accelerator, Manifest, Precision
from .base import BackendOptions, Device
from .spec import BackendSpec, QuantizerSpec

Compiled = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def compile_ir(path: Path, *, threads: int, cache_dir: Path | None, precision: str = "f32") -> Compiled:
    """The IR compiled for the CPU, as a function of named arrays returning arrays the caller owns.
    `precision` is OpenVINO's inference precision: f32, or bf16 on CPUs with AVX-512 BF16 or AMX."""
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(cache_dir)
        except OSError:  # a read-only home on a device: run without the compiled-model cache
            pass
    compiled = core.compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    outputs = [(port, port.get_any_name()) for port in compiled.outputs]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # Copy in and out: by default OpenVINO shares numpy memory both ways, so a later request
        # would overwrite arrays an earlier caller still holds.
        results = request.infer(feeds, share_inputs=False, share_outputs=False)
        return {name: np.array(results[port], copy=True) for port, name in outputs}
    return run


class OpenVinoSession:
    name = "openvino"

    def __init__(self, run: Compiled) -> None:
        self._run = run

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run(feeds)


def open_session(folder: Path, manifest: Manifest, options: BackendOptions) -> OpenVinoSession:
    try:
        import openvino  # noqa: F401
    except ImportError:
        raise BackendUnavailableError("this artifact needs OpenVINO, which is not installed here",
                                      hint="pip install 'edgekiln[openvino]'") from None
    if options.device is Device.CUDA or manifest.target.accelerator is Accelerator.CUDA:
        raise BackendUnavailableError("OpenVINO artifacts run on the CPU here; CUDA targets use onnxruntime or tvm")
    cache = Path(os.environ.get("EDGEKILN_CACHE") or Path.home() / ".cache" / "edgekiln") / "openvino" / \
        manifest.artifact_id
    try:
        precision = "bf16" if manifest.precision is Precision.BF16 else "f32"  # int8 IR: f32 for the rest
        return OpenVinoSession(compile_ir(folder / manifest.model_file, threads=options.threads, cache_dir=cache,
                                          precision=precision))
    except RuntimeError as exc:  # OpenVINO reports bad IR as RuntimeError
        raise ArtifactError(f"OpenVINO cannot load {manifest.model_file}: {str(exc).splitlines()[0]}",
                            hint="recompile the artifact with this edgekiln version") from None


_QUANTIZER = "edgekiln.compiler.passes.quantize_openvino:make_quantizer"
SPEC = BackendSpec(
    name="openvino",
    description="OpenVINO IR on the CPU, f32 or bf16; int8 through NNCF (static, with calibration data)",
    runtime="edgekiln.runtime.backends.openvino:open_session",
    lowering="edgekiln.compiler.passes.lower_openvino:make_lowering",
    quantizers={"static": QuantizerSpec(_QUANTIZER, needs_calibration=True),
                "auto": QuantizerSpec(_QUANTIZER, needs_calibration=True)},
    profiler="edgekiln.runtime.profile.openvino:profile",
    precisions=("fp32", "bf16"),
    emulation_refusal="OpenVINO's CPU plugin did not start under qemu-user",
)
