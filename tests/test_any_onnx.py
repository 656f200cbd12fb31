"""Any ONNX file in: declared input shapes, model-derived shapes, recomputed outputs, the preflight
table, and per backend either a compile that matches ONNX Runtime or one clear error line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgekiln.compiler import compile
from edgekiln.compiler.errors import CompileError
from edgekiln.compiler.fidelity import FidelityConfig
from edgekiln.compiler.input_shapes import DimRange, format_input_shape, parse_input_shape, plan_shapes
from edgekiln.compiler.onnx_inspect import describe_onnx
from edgekiln.compiler.recipe import Recipe
from edgekiln.runtime import load
from edgekiln.runtime.manifest import TensorSpec

onnx = pytest.importorskip("onnx")
from onnx import TensorProto as T  # noqa: E402
from onnx import helper as h  # noqa: E402
from onnx import numpy_helper as nh  # noqa: E402

RNG = np.random.default_rng(0)
RANGE_32 = "x:1x3x[64..160:32]x[64..160:32]"


def _save(path, nodes, inputs, outputs, initializers=(), opset=17):
    graph = h.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _weights(name, shape):
    return nh.from_array((RNG.standard_normal(shape) * 0.3).astype(np.float32), name)


def unet(path, dims=("N", 3, "H", "W"), output_shape=()):
    """Conv stride 32 down, 1x1 conv, nearest upsample x32, add the input: H and W must be multiples of 32."""
    nodes = [
        h.make_node("Conv", ["x", "w1"], ["c1"], strides=[32, 32], pads=[1, 1, 1, 1], name="down"),
        h.make_node("Relu", ["c1"], ["r1"]),
        h.make_node("Conv", ["r1", "w2"], ["c2"], name="proj"),
        h.make_node("Resize", ["c2", "", "scales"], ["up"], mode="nearest", name="up"),
        h.make_node("Add", ["x", "up"], ["y"], name="skip"),
    ]
    scales = nh.from_array(np.array([1, 1, 32, 32], np.float32), "scales")
    return _save(
        path,
        nodes,
        [h.make_tensor_value_info("x", T.FLOAT, list(dims))],
        [h.make_tensor_value_info("y", T.FLOAT, list(output_shape))],
        [_weights("w1", (4, 3, 3, 3)), _weights("w2", (3, 4, 1, 1)), scales],
    )


def _compile(model, out, backend, *shapes, **flags):
    from edgekiln.compiler.input_shapes import shapes_from_flags

    recipe = Recipe.from_flags(backend=backend, input_shapes=shapes_from_flags(list(shapes)), cache=False, **flags)
    return compile(str(model), "host", out, recipe)


def _matches_ort(artifact, model, feeds, atol=1e-4):
    from edgekiln.compiler.ort_sessions import cpu_session

    expected = cpu_session(model, optimize=False).run(None, feeds)
    got = list(load(artifact).run(feeds).values())
    for want, have in zip(expected, got, strict=True):
        np.testing.assert_allclose(have, want, atol=atol, rtol=1e-4)


def _one_line(exc: CompileError) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text
    return text


# --- the shape flag's grammar ------------------------------------------------------------------------
_dims = st.lists(
    st.one_of(
        st.integers(1, 4096),
        st.builds(
            lambda low, span, multiple: DimRange(min=low * multiple, max=(low + span) * multiple, multiple=multiple),
            st.integers(1, 64),
            st.integers(0, 64),
            st.integers(1, 64),
        ),
    ),
    min_size=1,
    max_size=6,
)


@given(name=st.from_regex(r"[A-Za-z_][A-Za-z0-9_.:/]{0,12}", fullmatch=True), dims=_dims)
def test_input_shape_flag_round_trips(name, dims):
    parsed_name, parsed = parse_input_shape(format_input_shape(name, tuple(dims)))
    assert parsed_name == name and parsed == tuple(dims)
    for dim in parsed:
        if isinstance(dim, DimRange):
            sizes = [dim.size(pick) for pick in ("min", "mid", "max")]
            assert sizes == sorted(sizes) and all(s % dim.multiple == 0 and dim.min <= s <= dim.max for s in sizes)


@pytest.mark.parametrize(
    "text", ["x", "x:", ":1x3", "x:1x0x3", "x:1x[5..3]", "x:1x[33..63:32]", "x:1x[1..4", "x:1xabc"]
)
def test_bad_input_shape_flags_are_one_line(text):
    with pytest.raises(CompileError) as caught:
        parse_input_shape(text)
    assert "--input-shape" in _one_line(caught.value)


def test_declared_shapes_are_checked_against_the_model():
    inputs = (TensorSpec(name="x", dtype="float32", shape=("N", 3, "H", "W")),)
    with pytest.raises(CompileError, match="fixes it at 3"):
        plan_shapes(inputs, {"x": (1, 4, 64, 64)})
    with pytest.raises(CompileError, match="3 dimensions; the model.s has 4"):
        plan_shapes(inputs, {"x": (1, 3, 64)})
    with pytest.raises(CompileError, match="does not take"):
        plan_shapes(inputs, {"y": (1, 3, 64, 64)})


def test_recipe_keeps_ranges_through_toml(tmp_path):
    recipe = Recipe.from_flags(input_shapes={"x": (1, 3, DimRange(min=320, max=1280, multiple=32), 640)})
    path = recipe.save(tmp_path / "r.toml")
    assert '"320..1280:32"' in path.read_text()
    assert Recipe.from_file(path).source.input_shapes == recipe.source.input_shapes


# --- compiles ---------------------------------------------------------------------------------------
def test_undeclared_multiple_of_32_model_fails_in_one_line_naming_the_flag(tmp_path):
    model = unet(tmp_path / "unet.onnx")
    with pytest.raises(CompileError) as caught:
        _compile(model, tmp_path / "out", "onnxruntime")
    text = _one_line(caught.value)
    assert "x [1, 3, 8, 8]" in text and "'skip'" in text and "--input-shape x:1x3x[" in text


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_declared_ranges_compile_and_match(tmp_path, backend):
    pytest.importorskip(backend)
    model = unet(tmp_path / "unet.onnx")
    result = _compile(model, tmp_path / "out", backend, RANGE_32)
    report = json.loads((result.path / "reports" / "verify_fidelity.json").read_text())
    assert len(report["shapes"]) == 3  # the smallest, the middle and the largest shape of the ranges
    assert result.manifest.inputs[0].shape[2:] == ("H[64..160:32]", "W[64..160:32]")
    assert len(result.manifest.outputs[0].shape) == 4  # declared [] in the file: recomputed
    for size in (64, 96, 160):
        _matches_ort(
            result.path,
            model,
            {"x": RNG.standard_normal((1, 3, size, size + 32 if size < 160 else size)).astype(np.float32)},
        )


def test_tvm_takes_a_fixed_declared_shape_and_refuses_a_range(tmp_path):
    pytest.importorskip("tvm")
    model = unet(tmp_path / "unet.onnx")
    with pytest.raises(CompileError) as caught:
        _compile(model, tmp_path / "bad", "tvm", RANGE_32)
    assert "fixed" in _one_line(caught.value)
    result = _compile(model, tmp_path / "out", "tvm", "x:1x3x96x128")
    assert result.manifest.inputs[0].shape == (1, 3, 96, 128)
    _matches_ort(result.path, model, {"x": RNG.standard_normal((1, 3, 96, 128)).astype(np.float32)})


def test_minus_one_dims_and_nhwc_input(tmp_path):
    """A tf2onnx-style NHWC input with -1 batch, transposed in the graph; weights in Constant nodes."""
    weight = h.make_node("Constant", [], ["w"], value=_weights("w_value", (8, 3, 3, 3)))
    nodes = [
        weight,
        h.make_node("Transpose", ["x"], ["nchw"], perm=[0, 3, 1, 2]),
        h.make_node("Conv", ["nchw", "w"], ["c"], pads=[1, 1, 1, 1]),
        h.make_node("GlobalAveragePool", ["c"], ["p"]),
        h.make_node("Flatten", ["p"], ["y"]),
    ]
    model = _save(
        tmp_path / "nhwc.onnx",
        nodes,
        [h.make_tensor_value_info("x", T.FLOAT, [-1, 32, 32, 3])],
        [h.make_tensor_value_info("y", T.FLOAT, [-1, 8])],
    )
    for backend in ("onnxruntime", "openvino"):
        pytest.importorskip(backend)
        result = _compile(model, tmp_path / backend, backend)
        assert isinstance(result.manifest.inputs[0].shape[0], str)  # -1: dynamic, not a size
        _matches_ort(result.path, model, {"x": RNG.standard_normal((2, 32, 32, 3)).astype(np.float32)})


def test_weight_only_int8_with_dequantize_linear(tmp_path):
    q = nh.from_array(RNG.integers(-127, 127, (16, 8), dtype=np.int8), "wq")
    scale, zero = nh.from_array(np.array(0.01, np.float32), "s"), nh.from_array(np.array(0, np.int8), "z")
    nodes = [h.make_node("DequantizeLinear", ["wq", "s", "z"], ["w"]), h.make_node("MatMul", ["x", "w"], ["y"])]
    model = _save(
        tmp_path / "woq.onnx",
        nodes,
        [h.make_tensor_value_info("x", T.FLOAT, ["batch", 16])],
        [h.make_tensor_value_info("y", T.FLOAT, ["batch", 8])],
        [q, scale, zero],
    )
    # ONNX Runtime's optimised kernels fold the int8 weights differently from the unoptimised reference
    # (max abs diff ~0.02 on outputs of size ~5): the default limit (1e-3) stops the build in one line ...
    with pytest.raises(CompileError) as caught:
        _compile(model, tmp_path / "strict", "onnxruntime")
    assert "max abs diff" in _one_line(caught.value)
    # ... and a recipe's looser fidelity limits, the fix, build and match within them.
    loose = FidelityConfig(max_abs_diff=0.1, min_cosine=0.999)
    for backend in ("onnxruntime", "openvino"):
        pytest.importorskip(backend)
        result = _compile(model, tmp_path / backend, backend, fidelity=loose)
        _matches_ort(result.path, model, {"x": RNG.standard_normal((3, 16)).astype(np.float32)}, atol=0.1)


def test_external_data_with_declared_shape(tmp_path):
    model = onnx.load(str(unet(tmp_path / "src.onnx")))
    onnx.save(
        model,
        str(tmp_path / "ext.onnx"),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location="ext.onnx.data",
        size_threshold=100,
    )  # the conv weight
    assert (tmp_path / "ext.onnx.data").stat().st_size >= 4 * 3 * 3 * 3 * 4
    result = _compile(tmp_path / "ext.onnx", tmp_path / "out", "onnxruntime", "x:1x3x64x96")
    assert result.manifest.inputs[0].shape == (1, 3, 64, 96)
    _matches_ort(result.path, tmp_path / "ext.onnx", {"x": RNG.standard_normal((1, 3, 64, 96)).astype(np.float32)})


def test_output_shapes_unknown_to_inference_are_measured(tmp_path):
    """A custom-free graph whose output shape inference cannot give (NonZero): a real run decides."""
    nodes = [h.make_node("NonZero", ["x"], ["nz"]), h.make_node("Cast", ["nz"], ["y"], to=T.FLOAT)]
    model = _save(
        tmp_path / "nz.onnx",
        nodes,
        [h.make_tensor_value_info("x", T.FLOAT, [2, 3])],
        [h.make_tensor_value_info("y", T.FLOAT, [7])],
    )  # wrong: NonZero of a 2-D input is [2, n]
    result = _compile(model, tmp_path / "out", "onnxruntime")
    shape = result.manifest.outputs[0].shape
    assert len(shape) == 2 and shape[0] == 2 and isinstance(shape[1], str)


# --- preflight --------------------------------------------------------------------------------------
def test_preflight_names_what_each_backend_lacks(tmp_path):
    nodes = [h.make_node("Relu", ["x"], ["a"]), h.make_node("Det", ["a"], ["y"])]
    model = _save(
        tmp_path / "det.onnx",
        nodes,
        [h.make_tensor_value_info("x", T.FLOAT, [2, 4, 4])],
        [h.make_tensor_value_info("y", T.FLOAT, [2])],
    )
    rows = {row["backend"]: row for row in describe_onnx(model)["preflight"]}
    assert rows["onnxruntime"]["lacking"] == [] and rows["onnxruntime"]["supported"] == ["Det", "Relu"]
    for backend in ("openvino", "tvm"):
        if rows[backend]["available"]:
            assert rows[backend]["lacking"] == ["Det"] and rows[backend]["supported"] == ["Relu"]


# --- calibrated int8 from .npz tensors ----------------------------------------------------------------
def tiny_cnn(path):
    nodes = [
        h.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        h.make_node("Relu", ["c1"], ["r1"]),
        h.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
        h.make_node("Relu", ["c2"], ["r2"]),
        h.make_node("GlobalAveragePool", ["r2"], ["p"]),
        h.make_node("Flatten", ["p"], ["f"]),
        h.make_node("Gemm", ["f", "w3", "b3"], ["logits"], transB=1),
    ]
    weights = [
        _weights("w1", (16, 3, 3, 3)),
        _weights("b1", (16,)),
        _weights("w2", (32, 16, 3, 3)),
        _weights("b2", (32,)),
        _weights("w3", (10, 32)),
        _weights("b3", (10,)),
    ]
    return _save(
        path,
        nodes,
        [h.make_tensor_value_info("x", T.FLOAT, ["N", 3, 32, 32])],
        [h.make_tensor_value_info("logits", T.FLOAT, ["N", 10])],
        weights,
    )


def _images(count, seed):
    """Smooth random images (low-frequency noise upsampled), closer to photos than white noise."""
    coarse = np.random.default_rng(seed).standard_normal((count, 3, 8, 8)).astype(np.float32)
    return np.repeat(np.repeat(coarse, 4, axis=2), 4, axis=3)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_static_int8_from_npz_calibration_stays_close_to_float(tmp_path, backend):
    pytest.importorskip(backend)
    if backend == "openvino":
        pytest.importorskip("nncf")
    model = tiny_cnn(tmp_path / "cnn.onnx")
    np.savez(tmp_path / "calib.npz", x=_images(64, 1))
    np.savez(tmp_path / "eval.npz", x=_images(96, 2))
    result = _compile(
        model,
        tmp_path / "out",
        backend,
        quantize="static",
        calibration=str(tmp_path / "calib.npz"),
        eval_data=str(tmp_path / "eval.npz"),
        accuracy_budget=10.0,
    )
    assert result.manifest.precision.value == "int8"
    from edgekiln.runtime.reports.schema import read_reports

    report = read_reports(result.path).quantization
    assert report.metric == "top1_agreement" and report.float_metric == 1.0  # agreement with itself
    assert 0.9 < report.fidelity.min_cosine < 1.0  # measured (it read 1.0 whatever int8 did)
    if backend == "onnxruntime":  # a convolutional graph: its 3 int32 biases corrected (bias_correction.py)
        assert report.attempts[0].bias_correction["layers"] == 3
    images = _images(96, 3)
    from edgekiln.compiler.ort_sessions import cpu_session

    want = cpu_session(model, optimize=False).run(None, {"x": images})[0]
    got = load(result.path).run({"x": images})["logits"]
    assert np.mean(want.argmax(1) == got.argmax(1)) >= 0.9
    assert np.abs(got - want).max() < 0.25 * (want.max() - want.min())


def test_tensor_calibration_errors_are_one_line(tmp_path):
    model = tiny_cnn(tmp_path / "cnn.onnx")
    np.savez(tmp_path / "wrong.npz", images=_images(16, 1))
    with pytest.raises(CompileError) as caught:
        _compile(model, tmp_path / "a", "onnxruntime", quantize="static", calibration=str(tmp_path / "wrong.npz"))
    assert "lacks input(s) ['x']" in _one_line(caught.value)
    (tmp_path / "texts.txt").write_text("a\nb\n")
    with pytest.raises(CompileError) as caught:
        _compile(model, tmp_path / "b", "onnxruntime", quantize="static", calibration=str(tmp_path / "texts.txt"))
    assert ".npz" in _one_line(caught.value)
    np.savez(tmp_path / "channels.npz", x=_images(16, 1)[:, :2])  # 2 channels; the model takes 3
    with pytest.raises(CompileError) as caught:  # was an internal error from ONNX Runtime
        _compile(model, tmp_path / "c", "onnxruntime", quantize="static", calibration=str(tmp_path / "channels.npz"))
    assert "x has size 2 on axis 1; the model's input takes 3" in _one_line(caught.value)


def test_runtime_feeds_stay_inside_declared_ranges():
    """`bench` and `verify` make feeds from the manifest: a range axis takes sizes inside it."""
    from edgekiln.runtime.synthetic import make_tensor_feeds

    spec = TensorSpec(name="x", dtype="float32", shape=(1, 3, "H[320..1280:32]", "W[64..96:32]", -1))
    feeds = make_tensor_feeds([spec], 4, 128, np.random.default_rng(0))
    assert feeds["x"].shape == (1, 3, 320, 96, 128)  # 128 brought up to 320, down to 96; -1 is dynamic
    big = make_tensor_feeds([spec], 4, 1000, np.random.default_rng(0))
    assert big["x"].shape[2] == 992


def test_near_zero_rows_are_judged_by_abs_diff_not_direction():
    """A detector's probability map on random inputs is ~1e-6 everywhere: float noise turns its
    direction, but within the absolute limit it matches; a real difference still fails."""
    from edgekiln.compiler.fidelity import compare

    tiny = np.full((2, 100), 1e-6, np.float32)
    noisy = tiny + np.random.default_rng(0).normal(0, 2e-7, tiny.shape).astype(np.float32)
    assert compare([tiny], [noisy], 1, None, classifier=False, tolerance=1e-3).min_cosine < 0.99
    assert compare([tiny], [noisy], 1, None, classifier=False, tolerance=1e-3, cosine_floor=1e-3).min_cosine == 1.0
    flipped = np.ones((2, 100), np.float32)
    flipped[1, :50] = -1
    assert (
        compare(
            [np.ones((2, 100), np.float32)], [flipped], 1, None, classifier=False, tolerance=1e-3, cosine_floor=1e-3
        ).min_cosine
        == 0.0
    )


def test_int8_report_measures_direction_despite_its_loose_abs_limit():
    """The int8 report's abs limit (1e6) means "not enforced"; used as the cosine floor it skipped
    every row, so the report always said min cosine 1.0."""
    from edgekiln.compiler.fidelity import INT8_COSINE_FLOOR, INT8_REPORT_LIMITS, check

    flipped = np.ones((2, 100), np.float32)
    flipped[1, :50] = -1
    cases = [(2, None, {"x": np.zeros((2, 4), np.float32)})]
    report = check(
        lambda feeds: [np.ones((2, 100), np.float32)],
        lambda feeds: [flipped],
        cases,
        INT8_REPORT_LIMITS,
        classifier=False,
        names=("the float model", "int8"),
        cosine_floor=INT8_COSINE_FLOOR,
    )
    assert report.min_cosine == 0.0 and report.max_abs_diff == 2.0


def test_preflight_counts_operators_inside_subgraphs(tmp_path):
    branch = [
        h.make_graph(
            [h.make_node("Det", ["x"], [f"d{i}"])], f"b{i}", [], [h.make_tensor_value_info(f"d{i}", T.FLOAT, [2])]
        )
        for i in range(2)
    ]
    nodes = [h.make_node("If", ["c"], ["y"], then_branch=branch[0], else_branch=branch[1])]
    model = _save(
        tmp_path / "if.onnx",
        nodes,
        [h.make_tensor_value_info("x", T.FLOAT, [2, 4, 4]), h.make_tensor_value_info("c", T.BOOL, [])],
        [h.make_tensor_value_info("y", T.FLOAT, [2])],
    )
    rows = {row["backend"]: row for row in describe_onnx(model)["preflight"]}
    assert rows["onnxruntime"]["supported"] == ["Det", "If"]
    if rows["tvm"]["available"]:
        assert "Det" in rows["tvm"]["lacking"]


def test_cli_input_shape_flags_land_in_the_recipe(tmp_path, capsys):
    from edgekiln.cli.main import main

    model = unet(tmp_path / "unet.onnx")
    code = main(["compile", str(model), "--save-recipe", str(tmp_path / "r.toml"), "--input-shape", RANGE_32])
    assert code == 0
    capsys.readouterr()
    assert Recipe.from_file(tmp_path / "r.toml").source.input_shapes == {
        "x": (1, 3, DimRange(min=64, max=160, multiple=32), DimRange(min=64, max=160, multiple=32))
    }
    code = main(
        ["compile", str(model), "--save-recipe", str(tmp_path / "bad.toml"), "--input-shape", "x:1x3x[64..16]x64"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--input-shape" in err[0] and "pydantic" not in err[0]


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "tvm"])
def test_a_scalar_input_compiles_and_runs_on_every_backend(tmp_path, backend):
    """A rank-0 input (a threshold, a temperature) beside a batched one: no batch axis to slice or pad."""
    pytest.importorskip(backend)
    x = h.make_tensor_value_info("x", T.FLOAT, ["N", 4])
    s = h.make_tensor_value_info("s", T.FLOAT, [])
    model = _save(
        tmp_path / "scaled.onnx",
        [h.make_node("Mul", ["x", "s"], ["y"]), h.make_node("ReduceSum", ["y"], ["total"], keepdims=0)],
        [x, s],
        [h.make_tensor_value_info("y", T.FLOAT, ["N", 4]), h.make_tensor_value_info("total", T.FLOAT, [])],
    )
    result = _compile(model, tmp_path / "out", backend, "x:1x4")
    _matches_ort(
        result.path, model, {"x": RNG.standard_normal((1, 4)).astype(np.float32), "s": np.array(2.5, np.float32)}
    )


def test_sizes_outside_a_declared_range_are_refused_by_run_and_bench(tmp_path):
    """ONNX Runtime ran them without a word and OpenVINO failed in several lines; bench clamped the batch
    into the range and reported the batch it was asked for."""
    from edgekiln.runtime.bench import check_requested, feeds_for, has_sequence_axis
    from edgekiln.runtime.errors import InputError

    model = unet(tmp_path / "unet.onnx")
    result = _compile(model, tmp_path / "out", "onnxruntime", "x:[1..2]x3x[32..96:32]x[32..96:32]")
    session = load(result.path)
    assert has_sequence_axis(session)
    for shape, needle in (((3, 3, 32, 32), "1..2"), ((1, 3, 48, 32), "a multiple of 32"), ((1, 3, 32, 128), "32..96")):
        with pytest.raises(InputError, match=needle):
            session.run({"x": np.zeros(shape, np.float32)})
    with pytest.raises(InputError, match="beyond its range"):  # float64 past float32: refused, not made infinite
        session.run({"x": np.full((1, 3, 32, 32), 1e300)})
    for batches, sequences, needle in (([8], None, "--batch 8 is not a size"), ([1], [50], "a multiple of 32")):
        with pytest.raises(InputError, match=needle):
            check_requested(session.manifest.inputs, batches, sequences)
    check_requested(session.manifest.inputs, [2], [64])
    feeds = feeds_for(session, 1, 1, np.random.default_rng(0))  # warm-up's size, not asked for: into the range
    assert feeds["x"].shape == (1, 3, 32, 32)
    from edgekiln.runtime.bench import BenchConfig, benchmark
    from edgekiln.runtime.warmup import warm_up

    warm_up(session)  # a served model's warm-up (it failed once sizes were checked where they were not asked for)
    report = benchmark(session, BenchConfig(batches=(8,), sequences=(128,), warmup=0, runs=1), load_seconds=0.0)
    assert [(p["batch"], p["seq"]) for p in report["points"]] == [(2, 96)]  # the sizes run, not those asked for
    fixed = load(_compile(model, tmp_path / "fixed", "onnxruntime", "x:1x3x32x64").path)
    assert not has_sequence_axis(fixed)  # bench reports no sequence size for it


def test_an_output_that_is_empty_on_the_check_inputs_compiles_and_verifies(tmp_path):
    """A detector that finds nothing on random inputs (here NonZero of x > 1e30): the fidelity check
    compares empty arrays (it crashed reshaping them, an internal error)."""
    from edgekiln.runtime.verify import verify_artifact

    nodes = [h.make_node("Greater", ["x", "big"], ["hit"]), h.make_node("NonZero", ["hit"], ["where"])]
    model = _save(
        tmp_path / "empty.onnx",
        nodes,
        [h.make_tensor_value_info("x", T.FLOAT, ["N", 4])],
        [h.make_tensor_value_info("where", T.INT64, [2, "K"])],
        [nh.from_array(np.array(1e30, np.float32), "big")],
    )
    result = _compile(model, tmp_path / "out", "onnxruntime", "x:[1..4]x4")
    assert load(result.path).run({"x": np.ones((2, 4), np.float32)})["where"].shape == (2, 0)
    assert verify_artifact(result.path)["passed"]


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (h.make_tensor_value_info("x", T.STRING, ["N"]), "input x holds strings"),
        (h.make_tensor_value_info("x", T.FLOAT, [2, 0]), "input x has a size 0"),
    ],
)
def test_inputs_an_artifact_cannot_take_are_refused_at_compile(tmp_path, value, needle):
    """A string input compiled on ONNX Runtime into an artifact that could not run, verify or serve;
    a size-0 input into one that refused its own shape."""
    model = _save(tmp_path / "m.onnx", [h.make_node("Identity", ["x"], ["y"])], [value], [value_copy(value, "y")])
    with pytest.raises(CompileError) as caught:
        _compile(model, tmp_path / "out", "onnxruntime")
    assert needle in _one_line(caught.value)
    assert not (tmp_path / "out").exists()


def value_copy(value, name):
    """The same value info under another name."""
    copy = type(value)()
    copy.CopyFrom(value)
    copy.name = name
    return copy


def test_a_shape_too_large_to_allocate_is_refused_before_anything_is_allocated(tmp_path):
    """It was a MemoryError (an internal error) from the fidelity check's random inputs."""
    with pytest.raises(CompileError) as caught:
        _compile(unet(tmp_path / "unet.onnx"), tmp_path / "out", "onnxruntime", "x:1x3x99999968x99999968")
    assert "up to 29,999,980,800,003,072 values" in _one_line(caught.value)
    with pytest.raises(CompileError, match="gives input 'x' up to 300,000,000 values"):  # killed at 16 GB before
        _compile(unet(tmp_path / "unet.onnx"), tmp_path / "out", "onnxruntime", "x:1x3x10000x10000")


def test_a_model_declaring_a_huge_static_input_is_refused_up_front(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "huge",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [100000, 100000])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [100000, 100000])],
    )
    path = tmp_path / "huge.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(CompileError, match="the model fixes input 'x' at 10,000,000,000 values"):
        compile(path, "host", tmp_path / "art")


def test_a_sequence_output_is_one_error_naming_it(tmp_path):
    """ZipMap (scikit-learn's classifier output) or SplitToSequence give sequences, not tensors."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("SplitToSequence", ["x"], ["parts"], axis=1)],
        "seq",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_sequence_value_info("parts", TensorProto.FLOAT, None)],
    )
    path = tmp_path / "seq.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    with pytest.raises(CompileError, match="'parts' is a sequence, not a tensor.*zipmap"):
        compile(path, "host", tmp_path / "art")
    assert not (tmp_path / "art").exists()


def test_a_graph_onnxruntime_cannot_load_is_named_with_the_right_fix(tmp_path):
    """Inconsistent shapes are the file's fault (re-export it); an unknown operator is a missing kernel."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    bad = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "bad",
        [x],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor("w", TensorProto.FLOAT, [5, 3], [0.0] * 15)],
    )
    onnx.save(helper.make_model(bad, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "bad.onnx"))
    with pytest.raises(CompileError) as caught:
        compile(tmp_path / "bad.onnx", "host", tmp_path / "a", recipe=Recipe.from_flags(backend="onnxruntime"))
    assert "cannot load bad.onnx" in str(caught.value) and "disagrees with itself" in caught.value.hint
    custom = helper.make_graph(
        [helper.make_node("Foo", ["x"], ["y"], domain="com.x")],
        "custom",
        [x],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.x", 1)]
    onnx.save(helper.make_model(custom, opset_imports=opsets), str(tmp_path / "custom.onnx"))
    with pytest.raises(CompileError) as caught:
        compile(tmp_path / "custom.onnx", "host", tmp_path / "b", recipe=Recipe.from_flags(backend="onnxruntime"))
    assert "operator or opset this onnxruntime lacks" in caught.value.hint


def test_an_empty_output_from_a_backend_is_not_blamed_on_input_sizes(tmp_path):
    """OpenVINO's converter turns a graph whose output is its input into one with a second input; the
    check saw [0, 2] against [1, 2] and suggested --input-shape, which cannot help."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [],
        "passthrough",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "p.onnx"))
    with pytest.raises(CompileError) as caught:
        compile(tmp_path / "p.onnx", "host", tmp_path / "a", recipe=Recipe.from_flags(backend="openvino"))
    assert "an empty output" in str(caught.value) and caught.value.hint.endswith("use --backend onnxruntime")
    built = compile(tmp_path / "p.onnx", "host", tmp_path / "b", recipe=Recipe.from_flags(backend="onnxruntime"))
    x = np.arange(6, dtype=np.float32).reshape(3, 2)
    np.testing.assert_array_equal(load(built.path).run({"x": x})["x"], x)  # the suggested backend runs it


def test_labels_for_an_onnx_file_say_what_an_onnx_file_gives(tmp_path):
    model = unet(tmp_path / "u.onnx")
    with pytest.raises(CompileError, match=r"u\.onnx is an ONNX file, compiled as raw tensors.*map them to labels"):
        compile(str(model), "host", tmp_path / "out", Recipe.from_flags(backend="onnxruntime", labels=("a", "b")))
