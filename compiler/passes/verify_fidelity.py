"""Check the compiled ONNX numerically against the reference on several batch/sequence shapes.

The reference is the torch model when there is one, otherwise the user's original ONNX file run
without graph optimisations (or, where ONNX Runtime no longer runs the original, its upgraded graph
and any test data shipped beside it). The candidate runs in ONNX Runtime as the device will run it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekiln.runtime.hashing import sha256_json

from ..errors import FidelityError
from ..fidelity import FidelityConfig, Runner, check, fidelity_feeds, is_classifier, require
from ..input_shapes import suggestion
from ..onnx_reference import check_shipped, session_runner, shipped_cases, source_reference
from ..ort_sessions import cpu_session
from ..padding_check import padding_effect
from .base import BuildState, Pass
from .registry import register_pass

__all__ = ["FidelityConfig", "VerifyFidelity", "ort_runner"]


@register_pass
class VerifyFidelity(Pass):
    name = "verify_fidelity"
    version = 2  # 2: text models' details hold the padding check
    Config = FidelityConfig
    changes_model = False

    def input_key(self, state: BuildState) -> str:
        return sha256_json({"model": state.model_sha256(), "source": state.source.content_hash})

    def run(self, state: BuildState, out_dir: Path) -> dict[str, Any]:
        reference, reference_name = _reference(state)
        candidate = ort_runner(state.model_path, optimize=True)
        details = {}
        cases = shipped_cases(state.source.onnx_path) if state.source.onnx_path is not None else []
        if cases:
            details["test_data"] = check_shipped(cases, candidate, self.config.max_abs_diff)
            if not details["test_data"]["passed"]:
                worst = max(details["test_data"]["cases"], key=lambda row: row["max_abs_diff"])
                raise FidelityError(
                    f"compiled model differs from the outputs stored in {worst['case']} beside "
                    f"{state.source.description}: max abs diff {worst['max_abs_diff']:.3g}",
                    hint=_hint(state),
                )
        shapes = fidelity_feeds(state, self.config)
        reference = _once_per_case(reference, shapes)  # the padding check and the comparison share its runs
        if state.source.tokenizer is not None and state.source.torch is not None:
            padding = padding_effect(reference, shapes)  # does a text's answer depend on its batch?
            if padding is not None:
                details["padding"] = padding
        report = check(
            reference,
            candidate,
            shapes,
            self.config,
            classifier=is_classifier(state),
            names=(reference_name, "the compiled ONNX"),
            details=details,
            shape_hint=suggestion(state),
        )
        require(report, hint=_hint(state))
        return report.model_dump(mode="json")


def _once_per_case(runner: Runner, cases: list[tuple]) -> Runner:
    """`runner`, remembering its outputs for the cases' own feeds (other feeds run each time)."""
    tracked = {id(feeds) for _batch, _sequence, feeds in cases}  # the cases keep these dicts alive
    outputs: dict[int, list[np.ndarray]] = {}

    def run(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        key = id(feeds)
        if key not in tracked:
            return runner(feeds)
        if key not in outputs:
            outputs[key] = runner(feeds)
        return outputs[key]

    return run


def _hint(state: BuildState) -> str:
    if state.source.torch is None:  # a user's file: exporter and opset are not ours to choose
        return f"`edgekiln inspect {state.source.description}` shows what the compile converts; report the model"
    return "try another --exporter or --opset; report the model if it persists"


def _reference(state: BuildState) -> tuple[Runner, str]:
    if state.source.torch is not None:
        return _torch_runner(state.source.torch), "pytorch"
    return source_reference(state.source.onnx_path)


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
    return session_runner(cpu_session(path, optimize=optimize))
