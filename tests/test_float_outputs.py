"""Static int8 leaves logits in float (compiler/quantization/ort_quantize.float_outputs): a graph output
computed by a Gemm/MatMul skips the 8-bit QuantizeLinear/DequantizeLinear the quantizer puts on it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from edgekiln.compiler.quantization.ort_quantize import float_outputs  # noqa: E402

from .test_bias_correction import images, mobile_block, quantized  # noqa: E402


def classifier(path: Path) -> Path:
    """Conv, ReLU, global pool, flatten, a 40-class Gemm head: the end of an image classifier."""
    rng = np.random.default_rng(0)
    weights = {
        "w": rng.standard_normal((16, 3, 3, 3)).astype(np.float32) * 0.3,
        "b": rng.uniform(-0.1, 0.1, 16).astype(np.float32),
        "fc_w": rng.standard_normal((40, 16)).astype(np.float32),
        "fc_b": rng.uniform(-0.5, 0.5, 40).astype(np.float32),
    }
    nodes = [
        h.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        h.make_node("Relu", ["c"], ["r"], name="relu"),
        h.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        h.make_node("Flatten", ["p"], ["f"], name="flatten"),
        h.make_node("Gemm", ["f", "fc_w", "fc_b"], ["logits"], transB=1, name="head"),
    ]
    graph = h.make_graph(
        nodes,
        "classifier",
        [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 32, 32])],
        [h.make_tensor_value_info("logits", T.FLOAT, ["N", 40])],
        [numpy_helper.from_array(v, n) for n, v in weights.items()],
    )
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), str(path))
    return path


def run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def producer_of(path: Path, name: str):
    return next(node for node in onnx.load(str(path)).graph.node if name in node.output)


def test_logits_of_a_static_int8_classifier_stay_float(tmp_path):
    model = classifier(tmp_path / "classifier.onnx")
    int8 = quantized(model, tmp_path, [{"x": images(64, 1)[i : i + 8]} for i in range(0, 64, 8)])
    assert producer_of(int8, "logits").op_type == "Gemm"
    graph = onnx.load(str(int8)).graph
    used = {name for node in graph.node for name in node.input}
    assert {t.name for t in graph.initializer} <= used  # the dropped pair's scale and zero point went too
    assert "f_DequantizeLinear_Output" in producer_of(int8, "logits").input  # the head itself is still int8
    x = images(32, 2)
    want, got = run(model, x), run(int8, x)
    # 1280 scores on a uint8 grid could take at most 256 values; float logits take nearly all distinct ones
    assert len(np.unique(got)) > 1000
    np.testing.assert_allclose(got, want, atol=0.1 * np.abs(want).max())
    assert float_outputs(int8) == 0  # nothing left to rewrite


def test_a_convolution_output_keeps_its_int8_pair(tmp_path):
    """A Conv has no float-result integer kernel: dropping its output pair would run it in float."""
    model = mobile_block(tmp_path / "block.onnx")
    int8 = quantized(model, tmp_path, [{"x": images(16, 1)[i : i + 8]} for i in range(0, 16, 8)])
    assert producer_of(int8, "y").op_type == "DequantizeLinear"
