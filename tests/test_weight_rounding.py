"""GPTQ codes for int8 convolution weights (compiler/quantization/weight_rounding.py): the output error on
real inputs, not each weight's own rounding error, is what they minimise."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from edgekiln.compiler.ort_sessions import cpu_session  # noqa: E402
from edgekiln.compiler.quantization.weight_rounding import gptq, round_weights  # noqa: E402

from .test_bias_correction import images, mobile_block, quantized  # noqa: E402


def correlated_inputs(rows: int, width: int, seed: int) -> np.ndarray:
    """Inputs whose features move together, as neighbouring pixels do."""
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((width, width)) * 0.3 + np.eye(width)
    return (
        rng.standard_normal((rows, 4)) @ rng.standard_normal((4, width))
        + rng.standard_normal((rows, width)) @ mixing * 0.3
    )


@pytest.mark.parametrize("shared", [True, False], ids=["dense", "depthwise"])
def test_gptq_codes_give_a_smaller_output_error_than_nearest(shared):
    rng = np.random.default_rng(0)
    rows, width = 16, 27
    weights = rng.standard_normal((rows, width))
    scale = np.abs(weights).max(axis=1) / 127
    limit = np.full(rows, 127)
    if shared:
        x = correlated_inputs(4000, width, 1)
        hessian, inputs = x.T @ x / len(x), [x] * rows
    else:  # one input distribution per row, as each depthwise channel sees its own channel
        inputs = [correlated_inputs(2000, width, 10 + row) for row in range(rows)]
        hessian = np.stack([x.T @ x / len(x) for x in inputs])
    codes = gptq(weights, hessian, scale, limit)
    nearest = np.clip(np.round(weights / scale[:, None]), -limit[:, None], limit[:, None])
    assert np.abs(codes).max() <= 127 and codes.dtype.kind == "i"

    def error(chosen):  # each row's output error on a fresh draw from its own input distribution
        return sum(float(np.square((weights[r] - chosen[r] * scale[r]) @ inputs[r].T).mean()) for r in range(rows))

    assert error(codes) < 0.7 * error(nearest)
    assert np.abs(codes - nearest).max() <= 3  # the same grid, only nearby codes


def test_round_weights_lowers_the_int8_models_error_on_unseen_images(tmp_path):
    model = mobile_block(tmp_path / "block.onnx")
    feeds = [{"x": images(8, seed)} for seed in range(4)]
    int8 = quantized(model, tmp_path, feeds)
    nearest = tmp_path / "nearest.onnx"
    nearest.write_bytes(int8.read_bytes())
    result = round_weights(model, int8, feeds)
    assert result.layers == 3 and 0 < result.changed < 0.5  # stem, depthwise and projection

    unseen = {"x": images(32, 99)}
    (want,) = cpu_session(model, optimize=False).run(None, unseen)

    def mse(path):
        (got,) = cpu_session(path, optimize=True).run(None, unseen)
        return float(np.square(got - want).mean())

    assert mse(int8) < 0.95 * mse(nearest)  # 11 % lower here; activations cause the rest


def test_one_dimensional_convolutions_keep_the_nearest_codes(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((4, 2, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1], name="conv1d")],
        "audio",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 16])],
        [weight],
    )
    model = tmp_path / "conv1d.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(model))
    feeds = [{"x": rng.standard_normal((4, 2, 16)).astype(np.float32)} for _ in range(2)]
    int8 = quantized(model, tmp_path, feeds)
    before = int8.read_bytes()
    assert round_weights(model, int8, feeds).layers == 0 and int8.read_bytes() == before


@pytest.mark.parametrize("per_channel", [True, False], ids=["per-channel", "per-tensor"])
def test_unnamed_convolutions_pair_by_order_and_per_tensor_scales_share_one_range(tmp_path, per_channel):
    from edgekiln.compiler.quantization.calibration import CalibrationSet
    from edgekiln.compiler.quantization.config import QuantizeConfig, QuantMode
    from edgekiln.compiler.quantization.conv_ops import CNN_OP_TYPES
    from edgekiln.compiler.quantization.ort_quantize import quantize_model

    model = mobile_block(tmp_path / "block.onnx")
    graph = onnx.load(str(model))
    for node in graph.graph.node:
        node.name = ""  # as some exporters leave them
    onnx.save(graph, str(model))
    feeds = [{"x": images(8, seed)} for seed in range(4)]
    int8 = tmp_path / "int8.onnx"
    config = QuantizeConfig(mode=QuantMode.STATIC, op_types=CNN_OP_TYPES, per_channel=per_channel)
    quantize_model(model, int8, config, CalibrationSet(tuple(feeds), 32, "test", "test"), tmp_path)
    result = round_weights(model, int8, feeds)
    assert result.layers == 3 and result.changed > 0
    codes = [onnx.numpy_helper.to_array(init) for init in onnx.load(str(int8)).graph.initializer if init.data_type == 3]
    assert codes and max(int(np.abs(c).max()) for c in codes) <= 127
