"""Per-layer diagnostics of the OpenVINO (NNCF) int8 path: SQNR rows on a hand-built IR pair checked
against numpy, and on a tiny BERT compiled with NNCF, against the runtime's own outputs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from edgekiln.compiler import Recipe
from edgekiln.compiler.quantization.sensitivity import layer_report, sqnr_db

from .conftest import make_bert_folder
from .test_finetune_eval import _sentiment

ov = pytest.importorskip("openvino", reason="the openvino extra is not installed")
from edgekiln.compiler.quantization.openvino_layers import (  # after the openvino skip
    kept_float_layers,
    openvino_layer_report,
    quantized_layers,
)

RANGE = 3.0  # FakeQuantize range of the hand-built activations
MIN_LAYER_SQNR_DB = 20.0  # a random tiny BERT measured 34-46 dB per layer with NNCF's defaults
SQNR_TOLERANCE_DB = 0.05


def _fake_quantize(x: np.ndarray) -> np.ndarray:
    """OpenVINO's FakeQuantize with 256 levels on [-RANGE, RANGE] (input and output ranges equal)."""
    steps = np.round((np.clip(x, -RANGE, RANGE) + RANGE) / (2 * RANGE) * 255)
    return (steps / 255 * (2 * RANGE) - RANGE).astype(np.float32)


def _int8_weights(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scale = np.float32(np.abs(w).max() / 127)
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    return q, scale


def _ir(
    w1: np.ndarray,
    w2: np.ndarray,
    *,
    quantize: tuple[bool, bool] = (False, False),
    names: tuple[str, str] = ("dense", "head"),
):
    """x -> MatMul(w1) -> Relu -> MatMul(w2): a quantized MatMul gets a FakeQuantize on its input and
    int8 weights decompressed by Convert and Multiply, as NNCF writes them."""
    from openvino import opset13 as ops

    x = ops.parameter([-1, w1.shape[0]], np.float32, name="x")
    hidden = x
    for i, (weight, quantized, name) in enumerate(zip((w1, w2), quantize, names)):
        if quantized:
            low, high = ops.constant(np.float32(-RANGE)), ops.constant(np.float32(RANGE))
            hidden = ops.fake_quantize(hidden, low, high, low, high, 256)
            q, scale = _int8_weights(weight)
            weight_node = ops.multiply(ops.convert(ops.constant(q), "f32"), ops.constant(scale))
        else:
            weight_node = ops.constant(weight)
        matmul = ops.matmul(hidden, weight_node, False, False)
        matmul.set_friendly_name(name)
        hidden = ops.relu(matmul) if i == 0 else matmul
    return ov.Model([hidden], [x], "tiny")


@pytest.fixture(scope="module")
def weights() -> tuple[np.ndarray, np.ndarray, list[dict[str, np.ndarray]]]:
    rng = np.random.default_rng(0)
    w1 = rng.normal(0, 0.5, (8, 6)).astype(np.float32)
    w2 = rng.normal(0, 0.5, (6, 3)).astype(np.float32)
    feeds = [{"x": rng.normal(0, 1, (5, 8)).astype(np.float32)} for _ in range(3)]
    return w1, w2, feeds


def test_rows_match_numpy_on_a_hand_built_ir_pair(weights):
    w1, w2, feeds = weights
    float_ir = _ir(w1, w2)
    plain = _ir(w1, w2, quantize=(True, True))
    int8 = _ir(w1, w2, quantize=(True, False))  # "head" returned to float, as accuracy control does
    assert quantized_layers(float_ir) == {}
    assert quantized_layers(plain) == {"dense": "MatMul", "head": "MatMul"}
    assert kept_float_layers(int8, plain) == ["head"]

    rows = {row["node"]: row for row in openvino_layer_report(float_ir, int8, feeds, plain_int8_model=plain)}
    assert set(rows) == {"dense", "head"}
    (q1, s1), xs = _int8_weights(w1), [feed["x"] for feed in feeds]
    dense_ref, dense_got = [x @ w1 for x in xs], [_fake_quantize(x) @ (q1.astype(np.float32) * s1) for x in xs]
    head_ref = [np.maximum(r, 0) @ w2 for r in dense_ref]
    head_got = [np.maximum(g, 0) @ w2 for g in dense_got]
    assert rows["dense"]["sqnr_db"] == pytest.approx(sqnr_db(dense_ref, dense_got), abs=SQNR_TOLERANCE_DB)
    assert rows["head"]["sqnr_db"] == pytest.approx(sqnr_db(head_ref, head_got), abs=SQNR_TOLERANCE_DB)
    assert 20 < rows["dense"]["sqnr_db"] < 60  # int8 of a unit-variance input: finite, neither exact nor noise
    assert (rows["dense"]["int8"], rows["dense"]["kept_float"]) == (True, False)
    assert (rows["head"]["int8"], rows["head"]["kept_float"]) == (False, True)
    assert rows["dense"]["weight_min"] == pytest.approx(float(w1.min()))
    assert rows["head"]["weight_max"] == pytest.approx(float(w2.max()))
    assert rows["dense"]["activation_min"] == pytest.approx(float(min(r.min() for r in dense_ref)), rel=1e-5)
    assert rows["head"]["activation_max"] == pytest.approx(float(max(r.max() for r in head_ref)), rel=1e-5)


def test_embedding_lookups_are_layers_and_a_token_selection_is_seen_through(weights):
    """int8 weights into a Gather make the Gather a quantized layer (an embedding lookup); a FakeQuantize
    before the Gather of the first token (as NNCF quantizes a pooler) belongs to the MatMul after it."""
    from openvino import opset13 as ops

    w1, _, _ = weights
    ids = ops.parameter([2, 3], np.int64, name="ids")
    q, scale = _int8_weights(w1)
    embed = ops.gather(
        ops.multiply(ops.convert(ops.constant(q), "f32"), ops.constant(scale)), ids, ops.constant(np.int64(0))
    )
    embed.set_friendly_name("embed")
    low, high = ops.constant(np.float32(-RANGE)), ops.constant(np.float32(RANGE))
    first = ops.gather(
        ops.fake_quantize(embed, low, high, low, high, 256), ops.constant(np.int64(0)), ops.constant(np.int64(1))
    )
    pool = ops.matmul(first, ops.constant(w1[:6]), False, False)
    pool.set_friendly_name("pool")
    assert quantized_layers(ov.Model([pool], [ids], "pooler")) == {"embed": "Gather", "pool": "MatMul"}


def test_a_layer_whose_name_is_not_in_the_float_ir_gets_no_sqnr(weights):
    w1, w2, feeds = weights
    int8 = _ir(w1, w2, quantize=(True, True), names=("dense", "renamed"))
    rows = {row["node"]: row for row in openvino_layer_report(_ir(w1, w2), int8, feeds)}
    assert rows["renamed"]["sqnr_db"] is None and rows["renamed"]["weight_min"] is None
    assert rows["renamed"]["int8"] is True and math.isfinite(rows["dense"]["sqnr_db"])


def test_rows_have_the_onnx_runtime_report_keys(weights, tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w1, _, feeds = weights
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="dense")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 6])],
        [numpy_helper.from_array(w1, "w")],
    )
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    onnx_row = layer_report(path, path, ["dense"], None, (feeds[0],))[0]
    ov_row = openvino_layer_report(_ir(w1, w1[:6, :3]), _ir(w1, w1[:6, :3], quantize=(True, True)), feeds)[0]
    assert set(ov_row) == set(onnx_row) | {"kept_float"}


@pytest.fixture(scope="module")
def nncf_artifacts(tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("nncf", reason="NNCF is not installed (pip install 'edgekiln[openvino]')")
    from edgekiln.compiler import compile

    root = tmp_path_factory.mktemp("ov-layers")
    model, calibration = make_bert_folder(root / "bert", "sequence", seed=3), _sentiment(root / "cal.tsv", 64, 0)
    return {
        "float": compile(model, "x86-64-avx2", root / "float", recipe=Recipe.from_flags(backend="openvino")).path,
        "int8": compile(
            model,
            "x86-64-avx2",
            root / "int8",
            recipe=Recipe.from_flags(backend="openvino", quantize="static", calibration=str(calibration)),
        ).path,
    }


def test_nncf_int8_artifact_reports_every_quantized_matmul(nncf_artifacts, capsys):
    from edgekiln.cli.main import main

    folder = nncf_artifacts["int8"]
    report = json.loads((folder / "reports" / "quantize_openvino.json").read_text())  # the QuantizationReport
    ir = ov.Core().read_model(str(folder / "model.xml"))
    matmuls = {op.get_friendly_name() for op in ir.get_ops() if op.get_type_name() == "MatMul"}
    rows = [row for row in report["layers"] if row["op"] == "MatMul"]
    assert {row["node"] for row in rows} == matmuls  # NNCF's transformer preset quantizes every MatMul
    assert all(math.isfinite(row["sqnr_db"]) and row["sqnr_db"] > MIN_LAYER_SQNR_DB for row in rows), sorted(
        (row["sqnr_db"], row["node"]) for row in rows
    )[:3]
    assert all(row["int8"] and not row["kept_float"] for row in report["layers"])
    assert report["excluded_nodes"] == [] and report["attempts"][0]["excluded_nodes"] == []
    assert report["method"] == "nncf" and report["fidelity"]["candidate"] == "int8 (NNCF)"
    html = (folder / "reports" / "report.html").read_text()
    assert (folder / "reports" / "quantize_sqnr.png").is_file() and "data:image/png;base64" in html
    assert "Least accurate layers" in html and "attention.self.query/MatMul" in html
    assert main(["inspect", str(folder), "--quantization"]) == 0
    assert "SQNR dB" in capsys.readouterr().out


def test_nncf_logits_sqnr_matches_the_runtime(nncf_artifacts):
    """The logits layer's SQNR from the sub-models equals numpy's on what the runtime returns."""
    from edgekiln.runtime import load

    reference, quantized = load(nncf_artifacts["float"]), load(nncf_artifacts["int8"])
    feeds = [reference.encoder.encode(texts)[0] for texts in (["i love this movie", "bad"], ["great acting"])]
    direct = sqnr_db([reference.run(f)["logits"] for f in feeds], [quantized.run(f)["logits"] for f in feeds])
    core = ov.Core()
    rows = openvino_layer_report(
        core.read_model(str(nncf_artifacts["float"] / "model.xml")),
        core.read_model(str(nncf_artifacts["int8"] / "model.xml")),
        feeds,
    )
    logits = next(row for row in rows if row["node"] == "logits")
    assert logits["sqnr_db"] == pytest.approx(direct, abs=SQNR_TOLERANCE_DB)


def test_a_calibration_method_nncf_would_not_use_is_refused(nncf_artifacts, tmp_path):
    from edgekiln.compiler import CompileError, compile

    root = nncf_artifacts["float"].parent
    recipe = Recipe.from_flags(
        backend="openvino", quantize="static", calibration=str(root / "cal.tsv"), calibration_method="percentile"
    )
    with pytest.raises(CompileError, match="--calibration-method percentile: OpenVINO quantizes .* with NNCF"):
        compile(root / "bert", "x86-64-avx2", tmp_path / "int8", recipe=recipe)
    assert not (tmp_path / "int8").exists()
