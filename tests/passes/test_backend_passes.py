"""The backends' passes alone on the tiny MLP: OpenVINO lowering, and both int8 quantizers (their typed
QuantizationReport), each compared with ONNX Runtime on the same inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekiln.compiler.passes.lower_openvino import LowerOpenVino, LowerOpenVinoConfig
from edgekiln.compiler.passes.quantize import QuantizeOrt, QuantizePassConfig
from edgekiln.compiler.pipeline import run_passes
from edgekiln.compiler.quantization.config import QuantMode
from edgekiln.runtime.reports.schema import FidelityReport, QuantizationReport

from .conftest import run_onnx

X = np.random.default_rng(2).standard_normal((5, 16)).astype(np.float32)


def test_lower_openvino_matches_onnxruntime(checked):
    pytest.importorskip("openvino")
    from edgekiln.runtime.backends.openvino import compile_ir

    state, store = checked
    lowered, _ = run_passes([LowerOpenVino(LowerOpenVinoConfig())], state, store)
    assert [path.name for path in lowered.lowered] == ["model.xml", "model.bin"]
    report = FidelityReport.model_validate(lowered.reports["lower_openvino"])
    assert report.passed and report.details["inference_precision"] == "f32"
    got = compile_ir(lowered.lowered[0], threads=1, cache_dir=None)({"x": X})["y"]
    np.testing.assert_allclose(got, run_onnx(state.model_path, X), atol=1e-4)


def test_dynamic_int8_writes_the_typed_report(checked):
    state, store = checked
    quantized, _ = run_passes([QuantizeOrt(QuantizePassConfig(mode=QuantMode.DYNAMIC, bench_sequence=8))], state, store)
    report = QuantizationReport.model_validate(quantized.reports["quantize"])
    assert report.backend == "onnxruntime" and report.chosen == "dynamic"
    assert {row.node for row in report.layers} == {"fc1/MatMul", "fc2/MatMul"}
    assert all(row.sqnr_db is not None and row.sqnr_db > 15 for row in report.layers)
    assert report.fidelity is not None and report.fidelity.reference == "the float model"
    int8, fp32 = run_onnx(Path(quantized.model_path), X), run_onnx(state.model_path, X)
    cosine = float((int8 * fp32).sum() / np.linalg.norm(int8) / np.linalg.norm(fp32))
    assert cosine > 0.99
