"""Empirical bias correction of static int8 CNNs (compiler/quantization/bias_correction.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from edgekiln.compiler.quantization.bias_correction import channel_means, correct_biases  # noqa: E402
from edgekiln.compiler.quantization.calibration import CalibrationSet  # noqa: E402
from edgekiln.compiler.quantization.config import QuantizeConfig, QuantMode  # noqa: E402
from edgekiln.compiler.quantization.conv_ops import CNN_OP_TYPES  # noqa: E402
from edgekiln.compiler.quantization.ort_quantize import quantize_model  # noqa: E402


def mobile_block(path: Path) -> Path:
    """Stem conv, ReLU6, depthwise conv, ReLU6, 1x1 projection: EfficientNet-Lite's pattern. A few stem
    channels with large weights stretch the per-tensor activation range, as in the real model."""
    rng = np.random.default_rng(0)
    stem = rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3
    stem[:2] *= 8.0
    weights = {
        "w1": stem,
        "b1": rng.uniform(0.0, 0.5, 8).astype(np.float32),
        "w2": rng.standard_normal((8, 1, 3, 3)).astype(np.float32) * 0.4,
        "b2": rng.uniform(-0.2, 0.2, 8).astype(np.float32),
        "w3": rng.standard_normal((6, 8, 1, 1)).astype(np.float32) * 0.5,
        "b3": np.zeros(6, np.float32),
    }
    limits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("lo", 0.0), ("hi", 6.0))]
    nodes = [
        h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2], name="stem"),
        h.make_node("Clip", ["c1", "lo", "hi"], ["r1"], name="act1"),
        h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], group=8, name="depthwise"),
        h.make_node("Clip", ["c2", "lo", "hi"], ["r2"], name="act2"),
        h.make_node("Conv", ["r2", "w3", "b3"], ["y"], name="project"),
    ]
    graph = h.make_graph(
        nodes,
        "block",
        [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 32, 32])],
        [h.make_tensor_value_info("y", T.FLOAT, ["N", 6, 16, 16])],
        [numpy_helper.from_array(v, n) for n, v in weights.items()] + limits,
    )
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]), str(path))
    return path


def images(count: int, seed: int) -> np.ndarray:
    coarse = np.random.default_rng(seed).standard_normal((count, 3, 8, 8)).astype(np.float32)
    return np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3)


def quantized(model: Path, tmp_path: Path, feeds) -> Path:
    out = tmp_path / "int8.onnx"
    config = QuantizeConfig(mode=QuantMode.STATIC, op_types=CNN_OP_TYPES)
    calibration = CalibrationSet(tuple(feeds), 8 * len(feeds), "test", "test")
    quantize_model(model, out, config, calibration, tmp_path)
    return out


def mean_error(float_model: Path, int8_model: Path, x: np.ndarray) -> float:
    """Largest per-channel mean difference of the outputs, on images the correction never saw."""
    feeds = [{"x": x[i : i + 8]} for i in range(0, len(x), 8)]
    (want,) = channel_means(onnx.load(str(float_model)), ["y"], feeds)
    (got,) = channel_means(onnx.load(str(int8_model)), ["y"], feeds)
    return float(np.abs(got - want).max())


def test_bias_correction_removes_the_int8_output_mean_shift(tmp_path):
    model = mobile_block(tmp_path / "block.onnx")
    calibration = [{"x": images(64, 1)[i : i + 8]} for i in range(0, 64, 8)]
    int8 = quantized(model, tmp_path, calibration)
    held_out = images(64, 2)
    before = mean_error(model, int8, held_out)
    biases_before = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(int8)).graph.initializer}

    result = correct_biases(model, int8, calibration)

    assert result.layers == 3 and result.max_shift > 0
    after = mean_error(model, int8, held_out)
    assert before > 2e-3  # int8 shifts the output means measurably (0.004 here) ...
    assert after < 0.5 * before  # ... and the corrected biases remove most of it on unseen images (0.0008)
    changed = [
        i.name
        for i in onnx.load(str(int8)).graph.initializer
        if not np.array_equal(numpy_helper.to_array(i), biases_before[i.name])
    ]
    assert sorted(changed) == ["b1_quantized", "b2_quantized", "b3_quantized"]  # the int32 biases, nothing else


def test_a_model_without_int8_biases_is_left_as_it_is(tmp_path):
    model = mobile_block(tmp_path / "block.onnx")
    feeds = [{"x": images(8, 1)}]
    assert correct_biases(model, model, feeds).layers == 0  # the float model: its biases are float
