"""ONNX -> OpenVINO conversion (compiler/openvino_convert.py): a pool whose one window covers its
input converts (OpenVINO refuses the kernel larger than the input that Hugging Face's EfficientNet
exports) and computes what ONNX Runtime computes; a failure is one line naming the operator."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.errors import CompileError
from edgekiln.compiler.openvino_convert import convert_onnx

ov = pytest.importorskip("openvino")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402


def _pool_model(path, *, kernel: int, stride: int, ceil_mode: int, external: bool = False):
    """x [batch, 3, 7, 7] -> 1x1 Conv to 4 channels -> AveragePool(kernel, stride, ceil_mode)."""
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3, 1, 1)).astype(np.float32), "w")
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"]),
        helper.make_node(
            "AveragePool", ["c"], ["y"], kernel_shape=[kernel, kernel], strides=[stride, stride], ceil_mode=ceil_mode
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "pool",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 7, 7])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.save(model, str(path), save_as_external_data=external, size_threshold=0, location="weights.data")
    return path


def _compare_with_onnxruntime(path) -> None:
    x = np.random.default_rng(1).standard_normal((2, 3, 7, 7)).astype(np.float32)
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    compiled = ov.Core().compile_model(
        convert_onnx(ov, path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )  # not bf16 where the CPU has it
    got = compiled({"x": x})[compiled.outputs[0]]
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("external", [False, True], ids=["inline", "external-data"])
def test_a_pool_over_the_whole_input_converts_and_matches_onnxruntime(tmp_path, external):
    path = _pool_model(tmp_path / "pool.onnx", kernel=1280, stride=1280, ceil_mode=1, external=external)
    with pytest.raises(Exception, match="larger than the data shape"):  # what OpenVINO does with the file itself
        ov.convert_model(str(path))
    _compare_with_onnxruntime(path)


@pytest.mark.parametrize(("kernel", "stride", "ceil_mode"), [(3, 2, 0), (3, 2, 1), (7, 7, 0)])
def test_pools_convert_and_match_onnxruntime(tmp_path, kernel, stride, ceil_mode):
    _compare_with_onnxruntime(_pool_model(tmp_path / "pool.onnx", kernel=kernel, stride=stride, ceil_mode=ceil_mode))


@pytest.mark.parametrize(
    ("attributes", "whole"),
    [
        ({"kernel_shape": [1280, 1280], "strides": [1280, 1280], "ceil_mode": 1}, True),  # EfficientNet's
        ({"kernel_shape": [7, 7]}, True),  # one exact window: strides 1 give one output
        ({"kernel_shape": [1280, 1280], "ceil_mode": 1}, False),  # strides 1: a negative output size
        ({"kernel_shape": [1280, 1280], "strides": [1280, 1280]}, False),  # floor mode: no window fits
        ({"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}, False),
        ({"kernel_shape": [7, 7], "pads": [1, 1, 1, 1]}, False),
        ({"kernel_shape": [7, 7], "auto_pad": "SAME_UPPER"}, False),
        ({"kernel_shape": [7, 7], "dilations": [2, 2]}, False),
    ],
)
def test_only_a_pool_with_one_window_over_the_whole_input_is_rewritten(attributes, whole):
    from edgekiln.compiler.openvino_convert import _covers_input

    node = helper.make_node("AveragePool", ["c"], ["y"], **attributes)
    assert _covers_input(node, [1, 4, 7, 7]) is whole
    assert _covers_input(node, [1, 4, None, 7]) is False  # an unknown size is never assumed


def test_an_operator_openvino_lacks_is_named_in_one_line(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("FooBar", ["x"], ["y"], domain="com.example")],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.example", 1)])
    onnx.save(model, str(tmp_path / "custom.onnx"))
    with pytest.raises(CompileError) as caught:
        convert_onnx(ov, tmp_path / "custom.onnx")
    message = str(caught.value)
    assert "com.example.FooBar" in message and "\n" not in message
    assert "failed at src/" not in message, message  # OpenVINO's own first line only points into its source
