"""check_onnx, ort_optimize and verify_fidelity, each alone on the tiny MLP."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.errors import CompileError, FidelityError
from edgekiln.compiler.fidelity import FidelityConfig
from edgekiln.compiler.passes.check_onnx import CheckOnnx
from edgekiln.compiler.passes.ort_optimize import OrtOptimize
from edgekiln.compiler.passes.verify_fidelity import VerifyFidelity
from edgekiln.compiler.pipeline import run_passes
from edgekiln.runtime.reports.schema import FidelityReport

from .conftest import run_onnx

X = np.random.default_rng(1).standard_normal((3, 16)).astype(np.float32)


def test_check_onnx_keeps_the_model(checked):
    state, _ = checked
    assert state.model_path.name == "model.onnx"
    np.testing.assert_allclose(run_onnx(state.model_path, X), run_onnx(state.source.onnx_path, X), atol=0)
    assert state.reports["check_onnx"]


def test_check_onnx_refuses_a_non_onnx_source(checked):
    state, _ = checked
    from dataclasses import replace

    with pytest.raises(CompileError, match="is not an ONNX file"):
        CheckOnnx().check_preconditions(replace(state, source=replace(state.source, onnx_path=None)))


def test_ort_optimize_matches_the_input(checked):
    state, store = checked
    optimized, records = run_passes([OrtOptimize()], state, store)
    assert optimized.model_path != state.model_path and records[0].name == "ort_optimize"
    np.testing.assert_allclose(run_onnx(optimized.model_path, X), run_onnx(state.model_path, X), atol=1e-5)


def test_verify_fidelity_writes_a_typed_dense_report(checked):
    state, store = checked
    done, _ = run_passes([VerifyFidelity()], state, store)
    report = FidelityReport.model_validate(done.reports["verify_fidelity"])
    assert report.passed and report.output_kind == "dense" and report.argmax_agreement is None
    assert report.max_abs_diff <= 1e-5 and len(report.shapes) == 3


def test_verify_fidelity_fails_past_its_limits(checked):
    state, store = checked
    with pytest.raises(FidelityError, match=r"max abs diff .* \(limit 1e-30\)"):
        run_passes([VerifyFidelity(FidelityConfig(max_abs_diff=1e-30, min_cosine=1.0))], state, store)
