"""Check the compiled ONNX numerically against the reference on several batch/sequence shapes.

The reference is the torch model when there is one, otherwise the user's original ONNX file run
without graph optimisations (or, where ONNX Runtime can no longer run it, its upgraded graph; and
the file's own `test_data_set_*` where it ships them: see `onnx_reference`). The candidate runs in
ONNX Runtime as the device will run it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
from pydantic import Field

from edgekiln.runtime.hashing import sha256_json
from edgekiln.runtime.verify import min_row_cosine

from ..errors import FidelityError
from ..onnx_reference import check_shipped, session_runner, shipped_cases, source_reference
from ..ort_sessions import cpu_session
from .base import BuildState, Pass, PassConfig
from .registry import register_pass

Runner = Callable[[dict[str, np.ndarray]], list[np.ndarray]]


class FidelityConfig(PassConfig):
    shapes: tuple[tuple[int, int], ...] = Field(default=((1, 8), (2, 17), (4, 64)), min_length=1)
    max_abs_diff: float = Field(default=1e-3, gt=0)
    min_cosine: float = Field(default=0.9999, gt=0, le=1)
    seed: int = 0


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
        rng = np.random.default_rng(self.config.seed)
        rows = []
        for batch, sequence in self.config.shapes:
            feeds = state.source.make_feeds(batch, sequence, rng)
            rows.append(compare_outputs(reference(feeds), candidate(feeds), batch, sequence))
        report = {
            "reference": reference_name,
            "thresholds": {"max_abs_diff": self.config.max_abs_diff, "min_cosine": self.config.min_cosine},
            "shapes": rows,
            "max_abs_diff": max(row["max_abs_diff"] for row in rows),
            "min_cosine": min(row["min_cosine"] for row in rows),
        }
        report["passed"] = bool(report["max_abs_diff"] <= self.config.max_abs_diff
                                and report["min_cosine"] >= self.config.min_cosine)
        cases = shipped_cases(state.source.onnx_path) if state.source.onnx_path is not None else []
        if cases:
            report["test_data"] = check_shipped(cases, candidate, self.config.max_abs_diff)
            if not report["test_data"]["passed"]:
                worst = max(report["test_data"]["cases"], key=lambda row: row["max_abs_diff"])
                raise FidelityError(f"compiled model differs from the outputs stored in {worst['case']} beside "
                                    f"{state.source.description}: max abs diff {worst['max_abs_diff']:.3g}",
                                    hint=_hint(state))
        if not report["passed"]:
            worst = max(rows, key=lambda row: row["max_abs_diff"])
            raise FidelityError(
                f"compiled model differs from {reference_name}: max abs diff {report['max_abs_diff']:.3g} "
                f"(limit {self.config.max_abs_diff:g}), min cosine {report['min_cosine']:.6f} "
                f"(limit {self.config.min_cosine:g}); worst at batch {worst['batch']}, sequence {worst['sequence']}",
                hint=_hint(state))
        return report


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


def compare_outputs(reference: list[np.ndarray], candidate: list[np.ndarray], batch: int, sequence: int) -> dict:
    if len(reference) != len(candidate):
        raise FidelityError(f"the compiled model returns {len(candidate)} outputs, the reference {len(reference)}")
    max_abs, min_cos = 0.0, 1.0
    for ref, out in zip(reference, candidate):
        if ref.shape != out.shape:
            raise FidelityError(f"output shape {list(out.shape)} differs from the reference's {list(ref.shape)} "
                                f"at batch {batch}, sequence {sequence}")
        max_abs = max(max_abs, float(np.abs(ref - out).max(initial=0.0)))
        min_cos = min(min_cos, min_row_cosine(ref, out))
    return {"batch": batch, "sequence": sequence, "max_abs_diff": max_abs, "min_cosine": min_cos}
