"""Check the compiled ONNX numerically against the reference on several batch/sequence shapes.

The reference is the torch model when there is one, otherwise the user's original ONNX file run
without graph optimisations. The candidate runs in ONNX Runtime as the device will run it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekiln.runtime.hashing import sha256_json

from ..fidelity import FidelityConfig, Runner, check, fidelity_feeds, is_classifier, require
from ..ort_sessions import cpu_session
from .base import BuildState, Pass
from .registry import register_pass

__all__ = ["FidelityConfig", "VerifyFidelity", "ort_runner"]


@register_pass
class VerifyFidelity(Pass):
    name = "verify_fidelity"
    Config = FidelityConfig
    changes_model = False

    def input_key(self, state: BuildState) -> str:
        return sha256_json({"model": state.model_sha256(), "source": state.source.content_hash})

    def run(self, state: BuildState, out_dir: Path) -> dict[str, Any]:
        reference, reference_name = _reference(state)
        candidate = ort_runner(state.model_path, optimize=True)
        report = check(reference, candidate, fidelity_feeds(state, self.config), self.config,
                       classifier=is_classifier(state), names=(reference_name, "the compiled ONNX"))
        require(report, hint="try another --exporter or --opset; report the model if it persists")
        return report.model_dump(mode="json")


def _reference(state: BuildState) -> tuple[Runner, str]:
    if state.source.torch is not None:
        return _torch_runner(state.source.torch), "pytorch"
    return ort_runner(state.source.onnx_path, optimize=False), "source onnx (unoptimised onnxruntime)"


def _torch_runner(spec) -> Runner:
    import torch

    module = spec.build()

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.inference_mode():
            outputs = module(*(torch.from_numpy(feeds[name]) for name in spec.input_names))
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        return [output.float().numpy() for output in outputs]
    return run


def ort_runner(path: Path, *, optimize: bool) -> Runner:
    session = cpu_session(path, optimize=optimize)
    return lambda feeds: [np.asarray(output, dtype=np.float32) for output in session.run(None, feeds)]
