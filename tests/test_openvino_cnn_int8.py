"""Static int8 of a CNN for OpenVINO (compiler/passes/quantize_openvino.py): ONNX Runtime's QDQ graph with
GPTQ codes and corrected biases, converted to IR (compiler/quantization/openvino_qdq.py): the same codes
ONNX Runtime runs; under an accuracy budget its least accurate layers go back to float. The first layer's weights keep the
full 8-bit range where the target's int8 dot products do not saturate (VNNI), and are halved (7-bit
weights) where they do (AVX2)."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("openvino")

from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

from edgekiln.compiler import Recipe, compile  # noqa: E402


def small_cnn(path):
    rng = np.random.default_rng(0)
    weights = {
        "w1": rng.standard_normal((8, 3, 3, 3)) * 0.3,
        "b1": rng.uniform(0, 0.3, 8),
        "w2": rng.standard_normal((8, 1, 3, 3)) * 0.4,
        "w3": rng.standard_normal((10, 8)) * 0.3,
        "b3": np.zeros(10),
        "lo": np.array(0.0),
        "hi": np.array(6.0),
    }
    nodes = [
        h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], name="stem"),
        h.make_node("Clip", ["c1", "lo", "hi"], ["r1"]),
        h.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1], group=8, name="depthwise"),
        h.make_node("Clip", ["c2", "lo", "hi"], ["r2"]),
        h.make_node("GlobalAveragePool", ["r2"], ["p"]),
        h.make_node("Flatten", ["p"], ["f"]),
        h.make_node("Gemm", ["f", "w3", "b3"], ["logits"], transB=1, name="head"),
    ]
    graph = h.make_graph(
        nodes,
        "cnn",
        [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 16, 16])],
        [h.make_tensor_value_info("logits", T.FLOAT, ["N", 10])],
        [nh.from_array(v.astype(np.float32), n) for n, v in weights.items()],
    )
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def stem_weight_range(artifact) -> int:
    """The largest |int8 value| of the first convolution's weights in the int8 IR."""
    import openvino as ov

    model = ov.Core().read_model(str(artifact / "model.xml"))
    conv = next(op for op in model.get_ordered_ops() if op.get_type_name() == "Convolution")
    node = conv.input_value(1).get_node()
    while node.get_type_name() != "Constant":  # Multiply(scale) <- [Subtract] <- Convert <- Constant(int8)
        node = node.input_value(0).get_node()
    values = node.get_data()
    assert values.dtype == np.int8
    return int(np.abs(values.astype(np.int32)).max())


@pytest.mark.parametrize(("target", "largest"), [("x86-64-avx512-vnni", 127), ("x86-64-avx2", 64)])
def test_first_layer_weights_use_the_full_range_only_where_the_isa_does_not_saturate(tmp_path, target, largest):
    model = small_cnn(tmp_path / "cnn.onnx")
    coarse = np.random.default_rng(1).standard_normal((32, 3, 4, 4)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3))
    recipe = Recipe.from_flags(
        backend="openvino", quantize="static", calibration=str(tmp_path / "calib.npz"), cache=False
    )
    result = compile(str(model), target, tmp_path / target, recipe)
    assert result.manifest.precision.value == "int8"
    assert stem_weight_range(result.path) in (largest - 1, largest)


def _reports(artifact) -> dict:
    import json

    return json.loads((artifact / "reports" / "quantize_openvino.json").read_text())


def test_a_cnn_without_a_budget_gets_gptq_codes_and_runs_like_onnx_runtimes_int8(tmp_path):
    """The IR carries the QDQ graph's codes: OpenVINO's int8 logits match ONNX Runtime's int8 artifact (the
    same graph; 3e-8 apart here) far closer than either matches fp32 (2.6e-3)."""
    from edgekiln.runtime import load

    model = small_cnn(tmp_path / "cnn.onnx")
    rng = np.random.default_rng(1)
    coarse = rng.standard_normal((48, 3, 4, 4)).astype(np.float32)
    images = np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3)
    np.savez(tmp_path / "calib.npz", x=images[:32])
    built = {}
    for backend, quantize in (("onnxruntime", "none"), ("onnxruntime", "static"), ("openvino", "static")):
        recipe = Recipe.from_flags(
            backend=backend, quantize=quantize, calibration=str(tmp_path / "calib.npz"), cache=False
        )
        path = tmp_path / f"{backend}-{quantize}"
        built[backend, quantize] = compile(str(model), "x86-64-avx512-vnni", path, recipe).path
    report = _reports(built["openvino", "static"])
    assert report["method"] == "onnxruntime-qdq" and report["chosen"] == "onnxruntime-qdq-int8"
    assert report["attempts"][0]["weight_rounding"]["layers"] == 2  # the stem and the depthwise conv
    assert report["attempts"][0]["bias_correction"]["layers"] >= 2
    assert report["fidelity"]["candidate"] == "int8 (QDQ, GPTQ codes)"
    assert stem_weight_range(built["openvino", "static"]) == 127
    held_out = {"x": images[32:]}
    fp32, ort, ov = (load(built[key]).run(held_out)["logits"] for key in [("onnxruntime", "none"), *list(built)[1:]])
    assert np.abs(ov - ort).max() < 0.05 * np.abs(ort - fp32).max(), (np.abs(ov - ort).max(), np.abs(ort - fp32).max())


def _budget_build(tmp_path, budget: float):
    model = small_cnn(tmp_path / "cnn.onnx")
    rng = np.random.default_rng(2)
    images = np.repeat(np.repeat(rng.standard_normal((32, 3, 4, 4)), 4, axis=2), 4, axis=3).astype(np.float32)
    np.savez(tmp_path / "calib.npz", x=images)
    np.savez(tmp_path / "eval.npz", x=images, labels=np.zeros(32, dtype=np.int64))
    recipe = Recipe.from_flags(
        backend="openvino",
        quantize="static",
        calibration=str(tmp_path / "calib.npz"),
        eval_data=str(tmp_path / "eval.npz"),
        accuracy_budget=budget,
        cache=False,
    )
    return compile(str(model), "x86-64-avx512-vnni", tmp_path / "budget", recipe)


def _fake_drops(monkeypatch, drops: list[float]):
    """Scores in call order: the float IR's, then each attempt's, losing `drops` points in turn."""
    from edgekiln.compiler.quantization.evaluation import Score
    from edgekiln.compiler.quantization.tensors import TensorEvaluator  # eval tensors (an .npz)

    calls = []

    def score(self, path):
        calls.append(path)
        value = 0.9 if len(calls) == 1 else 0.9 - drops[len(calls) - 2] / 100
        return Score(self.metric, value, [])

    monkeypatch.setattr(TensorEvaluator, "score", score)
    monkeypatch.setattr(TensorEvaluator, "agreement", staticmethod(lambda a, b: 1.0))
    return calls


def test_a_budget_returns_the_least_accurate_layers_of_the_qdq_graph_to_float(tmp_path, monkeypatch):
    """Under a budget a CNN keeps the GPTQ route; while over it, layers go back to float 1, 2, ... at a
    time (least accurate first), and the report's rows say which."""
    calls = _fake_drops(monkeypatch, [5.0, 3.0, 0.5])
    result = _budget_build(tmp_path, budget=1.0)
    report = _reports(result.path)
    assert report["method"] == "onnxruntime-qdq" and report["chosen"] == "onnxruntime-qdq-int8"
    steps = report["attempts"][0]["steps"]
    assert [s["excluded"] for s in steps] == [0, 1, 2] and [s["accuracy_drop"] for s in steps] == [5.0, 3.0, 0.5]
    assert len(calls) == 4 and report["accuracy_drop"] == 0.5
    # the layers back in float are ONNX nodes, as ONNX Runtime's are: the same in the manifest and the rows
    kept = set(report["excluded_nodes"])
    assert len(kept) == 2 and kept <= {"stem", "depthwise", "head"}
    assert set(result.manifest.quantization.kept_float) == kept
    assert {row["node"] for row in report["layers"] if row["kept_float"]} == kept
    assert not any(row["int8"] for row in report["layers"] if row["kept_float"])
    plain_convs = 2  # the stem and the depthwise conv get GPTQ codes when quantized
    assert report["attempts"][0]["weight_rounding"]["layers"] < plain_convs  # the stem (lowest SQNR) is float
    assert not list((tmp_path / "budget").glob("*.onnx"))


def test_a_budget_measured_on_the_int8_ir_that_fits_needs_no_float_layers(tmp_path):
    """No fake scores: the drop is measured on the IR that OpenVINO runs; within the budget nothing goes back."""
    report = _reports(_budget_build(tmp_path, budget=100).path)
    assert report["method"] == "onnxruntime-qdq" and report["excluded_nodes"] == []
    assert report["attempts"][0]["steps"] == [{"excluded": 0, "accuracy_drop": report["accuracy_drop"]}]
    assert report["attempts"][0]["agreement"] is not None and report["float_metric"] is not None


def test_a_budget_that_cannot_be_met_names_the_route_and_writes_no_artifact(tmp_path, monkeypatch):
    from edgekiln.compiler import CompileError

    _fake_drops(monkeypatch, [5.0] * 4)
    # 0, 1, 2 of the 3 layers in float (never all three: that is the float model), each 5 points
    with pytest.raises(CompileError, match=r"the int8 \(QDQ, GPTQ codes\) model loses 5.00 points with 2 layers"):
        _budget_build(tmp_path, budget=1.0)
    assert not (tmp_path / "budget").exists()


def test_the_int8_pass_declines_vendor_telemetry_itself(tmp_path, monkeypatch):
    """lower_openvino declines OpenVINO's usage reports, but it may come from the pass cache: the int8 pass,
    which converts the QDQ graph with OpenVINO's converter, declines them itself."""
    from edgekiln.compiler.passes import quantize_openvino

    calls = []
    monkeypatch.setattr(quantize_openvino, "decline_unless_opted_in", lambda: calls.append(1))
    model = small_cnn(tmp_path / "cnn.onnx")
    np.savez(tmp_path / "calib.npz", x=np.random.default_rng(3).standard_normal((16, 3, 16, 16)).astype(np.float32))
    recipe = Recipe.from_flags(
        backend="openvino", quantize="static", calibration=str(tmp_path / "calib.npz"), cache=False
    )
    assert _reports(compile(str(model), "x86-64-avx512-vnni", tmp_path / "out", recipe).path)["method"] == (
        "onnxruntime-qdq"
    )
    assert calls
