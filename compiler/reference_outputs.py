"""Reference outputs stored in the artifact: a few inputs and what ONNX Runtime computes for them
on the build machine, so `edgekiln verify` can check the artifact where it runs (or under emulation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgekiln.runtime.verify import REFERENCE_FILE

from .passes.base import BuildState
from .passes.verify_fidelity import ort_runner

SHAPES = ((1, 11), (2, None))  # None: the longest sequence the artifact takes (capped at 64)


def write_reference(folder: Path, state: BuildState, output_names: list[str], longest: int | None) -> str:
    run = _runner(state)
    rng = np.random.default_rng(1234)
    arrays = {}
    for number, (batch, sequence) in enumerate(SHAPES):
        length = min(sequence or 64, longest or 64)
        feeds = state.source.make_feeds(batch, length, rng)
        arrays.update({f"{number}/input/{name}": value for name, value in feeds.items()})
        arrays.update({f"{number}/output/{name}": value for name, value in zip(output_names, run(feeds))})
    np.savez(folder / REFERENCE_FILE, **arrays)
    return REFERENCE_FILE


def _runner(state: BuildState):
    """ONNX Runtime on the build's ONNX; for OpenVINO int8, whose quantized model exists only as the
    IR (NNCF's, or the QDQ graph converted), OpenVINO on that IR: the reference is what the artifact
    computes here, not the float model's outputs, or a fresh artifact failed its own verify."""
    ir = next((path for path in state.lowered if path.name == "model.xml"), None)
    if ir is not None and "quantize_openvino" in state.reports:
        from edgekiln.runtime.backends.openvino import compile_ir

        compiled = compile_ir(ir, threads=1, cache_dir=None)
        return lambda feeds: list(compiled(feeds).values())
    return ort_runner(state.model_path, optimize=True)
