"""Static int8 for convolutional networks: the whole conv graph is quantized (activations, Adds, pools),
so ONNX Runtime runs one integer graph instead of wrapping each Conv in Quantize/Dequantize; a
transformer keeps its matrix products only; NNCF's model type follows the same rule."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from edgekiln.compiler.quantization.config import QuantizeConfig, QuantMode
from edgekiln.compiler.quantization.conv_ops import CNN_OP_TYPES, is_convolutional, static_op_types

from .test_any_onnx import _compile, _images, _save, _weights, tiny_cnn

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402

TRANSFORMER_OPS = QuantizeConfig(mode=QuantMode.STATIC).op_types


def residual_cnn(path):
    """Conv-ReLU6-Conv plus a residual Add, pooled to logits: the MobileNet/EfficientNet pattern."""
    nodes = [
        h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        h.make_node("Clip", ["c1", "lo", "hi"], ["r1"]),
        h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=16),
        h.make_node("Clip", ["c2", "lo", "hi"], ["r2"]),
        h.make_node("Add", ["r1", "r2"], ["s"]),
        h.make_node("GlobalAveragePool", ["s"], ["p"]),
        h.make_node("Flatten", ["p"], ["f"]),
        h.make_node("Gemm", ["f", "w3", "b3"], ["logits"], transB=1),
    ]
    weights = [_weights("w1", (16, 3, 3, 3)), _weights("b1", (16,)), _weights("w2", (16, 1, 3, 3))]
    weights += [_weights("b2", (16,)), _weights("w3", (10, 16)), _weights("b3", (10,))]
    weights += [onnx.numpy_helper.from_array(np.float32(v), n) for n, v in (("lo", 0.0), ("hi", 6.0))]
    x = h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 32, 32])
    return _save(path, nodes, [x], [h.make_tensor_value_info("logits", T.FLOAT, ["N", 10])], weights)


def mlp_with_a_conv(path):
    """A ViT-shaped graph: one Conv (patch embedding) and more matrix products."""
    nodes = [
        h.make_node("Conv", ["x", "w1", "b1"], ["c"], strides=[8, 8]),
        h.make_node("Flatten", ["c"], ["f"]),
        h.make_node("MatMul", ["f", "m1"], ["a"]),
        h.make_node("MatMul", ["a", "m2"], ["logits"]),
    ]
    weights = [_weights("w1", (4, 3, 8, 8)), _weights("b1", (4,)), _weights("m1", (64, 8)), _weights("m2", (8, 10))]
    x = h.make_tensor_value_info("x", T.FLOAT, [1, 3, 32, 32])
    return _save(path, nodes, [x], [h.make_tensor_value_info("logits", T.FLOAT, [1, 10])], weights)


def test_the_conv_rule_counts_convolutions_against_matrix_products():
    assert is_convolutional(["Conv", "Relu", "Conv", "Gemm"])
    assert is_convolutional(["Conv", "Gemm"])
    assert not is_convolutional(["Conv", "MatMul", "MatMul"])
    assert not is_convolutional(["MatMul", "Add"])


def test_static_op_types_follow_the_graph(tmp_path):
    assert static_op_types(residual_cnn(tmp_path / "cnn.onnx"), TRANSFORMER_OPS) == CNN_OP_TYPES
    assert static_op_types(mlp_with_a_conv(tmp_path / "vit.onnx"), TRANSFORMER_OPS) == TRANSFORMER_OPS
    assert {"Clip", "Add", "GlobalAveragePool"} <= set(CNN_OP_TYPES)


def _optimized_ops(model_path, tmp_path) -> Counter:
    """The operators ONNX Runtime actually runs (its full optimisation, as the runtime loads it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    return Counter(node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)


@pytest.mark.parametrize("build", [residual_cnn, tiny_cnn])
def test_static_int8_cnn_runs_as_one_integer_graph(tmp_path, build):
    pytest.importorskip("onnxruntime")
    model = build(tmp_path / "cnn.onnx")
    np.savez(tmp_path / "calib.npz", x=_images(32, 1))
    result = _compile(
        model, tmp_path / "out", "onnxruntime", quantize="static", calibration=str(tmp_path / "calib.npz")
    )
    assert result.manifest.precision.value == "int8"
    ops = _optimized_ops(result.path / result.manifest.model_file, tmp_path)
    # the input is quantized once and the logits dequantized once; nothing float in between
    assert ops["QuantizeLinear"] <= 1 and ops["DequantizeLinear"] <= 1, ops
    assert ops["QLinearConv"] == 2 and "Conv" not in ops, ops
    from edgekiln.compiler.ort_sessions import cpu_session
    from edgekiln.runtime import load

    images = _images(64, 3)
    want = cpu_session(model, optimize=False).run(None, {"x": images})[0]
    got = load(result.path).run({"x": images})["logits"]
    assert np.abs(got - want).max() < 0.25 * (want.max() - want.min())


def test_openvino_model_type_rule_reads_the_ir(tmp_path):
    ov = pytest.importorskip("openvino")
    from edgekiln.compiler.quantization.conv_ops import is_convolutional_ir

    assert is_convolutional_ir(ov.convert_model(str(residual_cnn(tmp_path / "cnn.onnx"))))
    assert not is_convolutional_ir(ov.convert_model(str(mlp_with_a_conv(tmp_path / "vit.onnx"))))
