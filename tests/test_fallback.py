"""The per-layer fallback search: layers back to float 1, 2, 4, … at a time, never all of them (that
is the float model, which must not ship labelled int8)."""

from __future__ import annotations

from dataclasses import dataclass

from edgekiln.compiler.quantization.fallback import within_budget


@dataclass
class Attempt:
    exclude: tuple[str, ...]
    drop: float


def _search(layers: int, fits_from: int):
    built = []

    def build(exclude):
        built.append(exclude)
        return Attempt(exclude, 0.0 if len(exclude) >= fits_from else 10.0)

    attempt, steps = within_budget(
        build, lambda first: [f"n{i}" for i in range(layers)], lambda a: a.drop <= 1.0, lambda a: None
    )
    return attempt, steps, built


def test_the_search_stops_at_the_first_attempt_that_fits():
    attempt, steps, _ = _search(layers=10, fits_from=3)
    assert [s["excluded"] for s in steps] == [0, 1, 2, 4] and len(attempt.exclude) == 4


def test_every_layer_in_float_is_never_an_attempt():
    attempt, steps, built = _search(layers=5, fits_from=5)  # only the float model would fit
    assert max(len(exclude) for exclude in built) == 4
    assert [s["excluded"] for s in steps] == [0, 1, 2, 4] and attempt.drop == 10.0  # the caller refuses it


def test_a_single_layer_model_has_no_fallback():
    attempt, steps, built = _search(layers=1, fits_from=1)
    assert built == [()] and steps == [{"excluded": 0, "accuracy_drop": 10.0}]


def test_a_conv_whose_relu_the_quantizer_folds_has_an_sqnr(tmp_path):
    """QDQ folds Conv -> Relu (the Conv writes the Relu's output; the clamp is its QuantizeLinear's): the
    row compares the float Relu output with what the int8 graph dequantizes there, so the fallback can
    rank the layer (it had no SQNR, and was ranked last)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, quantize_static

    from edgekiln.compiler.quantization.sensitivity import layer_report

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "w")
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", ["c"], ["y"], name="relu"),
        ],
        "cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 16, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 16, 16])],
        [weight],
    )
    float_path, quant_path = tmp_path / "float.onnx", tmp_path / "int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), float_path)
    feeds = [{"x": rng.standard_normal((1, 3, 16, 16)).astype(np.float32)} for _ in range(4)]

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(feeds)

        def get_next(self):
            return next(self.items, None)

    quantize_static(str(float_path), str(quant_path), Reader(), quant_format=QuantFormat.QDQ)
    assert "c" not in {v for node in onnx.load(quant_path).graph.node for v in node.output}  # folded
    (row,) = layer_report(float_path, quant_path, ["conv"], None, tuple(feeds))
    assert row["sqnr_db"] is not None and 25 < row["sqnr_db"] < 80 and row["int8"]
