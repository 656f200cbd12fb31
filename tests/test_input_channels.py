"""An RGB stem padded to 4 input channels in a static int8 QDQ graph (compiler/quantization/input_channels.py):
the outputs are those of the unpadded graph, the pass reports it, and graphs outside the
pattern are left alone."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edgekiln.compiler.quantization.input_channels import pad_input_channels

from .test_any_onnx import _compile, _images, _save, _weights
from .test_int8_cnn import residual_cnn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402


def _qdq(float_path, out_path, channels=3):
    """ONNX Runtime's own static QDQ quantization (per-channel int8 weights), as the pass produces it."""
    images = _images(16, 1)
    images = np.concatenate([images, images[:, :1]], axis=1)[:, :channels]
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rows = iter([{"x": image[None]} for image in images])

        def get_next(self):
            return next(self.rows, None)

    quantize_static(
        str(float_path),
        str(out_path),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    return out_path


def _run(path, images):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": images})[0]


def test_padding_keeps_every_output_value(tmp_path):
    qdq = _qdq(residual_cnn(tmp_path / "cnn.onnx"), tmp_path / "qdq.onnx")
    padded = shutil.copy(qdq, tmp_path / "padded.onnx")
    result = pad_input_channels(padded)
    assert result is not None and result.channels == (3, 4)
    stem = next(node for node in onnx.load(str(padded)).graph.node if result.node in (node.name, node.output[0]))
    assert stem.op_type == "Conv" and stem.input[0] != "x"
    images = _images(5, 7)
    got, want = _run(padded, images), _run(qdq, images)
    # Every int32 sum is the same; the two int8 kernels requantize them alike here (bit for bit on
    # AVX-512 VNNI), and a rounding step apart at most on another CPU's kernels.
    assert np.abs(got - want).max() <= 0.01 * (want.max() - want.min())
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
    assert pad_input_channels(padded) is None  # the input is now read by the Pad: done once


def test_static_int8_reports_the_padded_stem(tmp_path):
    model = residual_cnn(tmp_path / "cnn.onnx")
    np.savez(tmp_path / "calib.npz", x=_images(32, 1))
    result = _compile(
        model, tmp_path / "out", "onnxruntime", quantize="static", calibration=str(tmp_path / "calib.npz")
    )
    import json

    report = json.loads((result.path / "reports" / "quantize.json").read_text())
    assert report["attempts"][0]["input_padding"]["channels"] == [3, 4]


def _graph(path, *, channels=3, group=1, second_reader=False):
    nodes = [h.make_node("Conv", ["x", "w"], ["c"], group=group), h.make_node("GlobalAveragePool", ["c"], ["p"])]
    outputs = [h.make_tensor_value_info("p", T.FLOAT, ["N", 6, 1, 1])]
    if second_reader:
        nodes.append(h.make_node("ReduceMean", ["x"], ["m"]))
        outputs.append(h.make_tensor_value_info("m", T.FLOAT, ["N", 1, 1, 1]))
    x = h.make_tensor_value_info("x", T.FLOAT, ["N", channels, 32, 32])
    return _save(path, nodes, [x], outputs, [_weights("w", (6, channels // group, 3, 3))])


@pytest.mark.parametrize(
    "shape",
    [{"channels": 4}, {"group": 3}, {"second_reader": True}],
    ids=["already-4-channels", "grouped-stem", "input-read-twice"],
)
def test_graphs_outside_the_pattern_are_left_alone(tmp_path, shape):
    qdq = _qdq(_graph(tmp_path / "g.onnx", **shape), tmp_path / "qdq.onnx", shape.get("channels", 3))
    before = (tmp_path / "qdq.onnx").read_bytes()
    assert pad_input_channels(qdq) is None
    assert (tmp_path / "qdq.onnx").read_bytes() == before


def _two_views(path, opset=17):
    """Two image inputs through one shared 3-channel stem weight (a siamese or multi-view stem)."""
    nodes = [h.make_node("Conv", ["x", "w"], ["ca"]), h.make_node("Conv", ["v", "w"], ["cb"])]
    nodes += [h.make_node("Add", ["ca", "cb"], ["s"]), h.make_node("GlobalAveragePool", ["s"], ["p"])]
    inputs = [h.make_tensor_value_info(name, T.FLOAT, ["N", 3, 32, 32]) for name in ("x", "v")]
    outputs = [h.make_tensor_value_info("p", T.FLOAT, ["N", 6, 1, 1])]
    graph = h.make_graph(nodes, "views", inputs, outputs, [_weights("w", (6, 3, 3, 3))])
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", opset)]), str(path))
    return path


def test_a_stem_weight_shared_with_another_convolution_is_left_alone(tmp_path):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.rows = iter([{"x": image[None], "v": image[None] * 0.5} for image in _images(8, 1)])

        def get_next(self):
            return next(self.rows, None)

    qdq = tmp_path / "qdq.onnx"
    quantize_static(str(_two_views(tmp_path / "f.onnx")), str(qdq), Reader(), quant_format=QuantFormat.QDQ)
    before = qdq.read_bytes()
    assert pad_input_channels(qdq) is None
    assert qdq.read_bytes() == before


def test_an_opset_before_11_is_left_alone(tmp_path):
    """Pad reads its pads from an input only from opset 11; an opset-10 QDQ graph keeps its stem."""
    qdq = tmp_path / "qdq.onnx"
    shutil.copy(_qdq(residual_cnn(tmp_path / "cnn.onnx"), tmp_path / "q17.onnx"), qdq)
    model = onnx.load(str(qdq))
    model.opset_import[0].version = 10
    onnx.save(model, str(qdq))
    assert pad_input_channels(qdq) is None
