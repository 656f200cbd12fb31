"""Quantization inputs refused in one line before any work: a model already int8, non-finite
calibration tensors, a histogram calibration method on variable-length text."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekiln.compiler import CompileError, Recipe, compile
from edgekiln.compiler.data import DataError


def _mlp(path, batch="batch"):
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((8, 4)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])],
        [weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_a_model_already_quantized_is_not_quantized_again(tmp_path):
    from onnxruntime.quantization import quantize_dynamic

    quantize_dynamic(str(_mlp(tmp_path / "mlp.onnx")), str(tmp_path / "int8.onnx"))
    with pytest.raises(CompileError, match="int8.onnx is already quantized") as error:
        compile(tmp_path / "int8.onnx", "x86-64-avx2", tmp_path / "out", Recipe.from_flags(quantize="dynamic"))
    assert "without --quantize" in error.value.hint and not (tmp_path / "out").exists()
    compile(tmp_path / "int8.onnx", "x86-64-avx2", tmp_path / "plain", Recipe.from_flags(backend="onnxruntime"))


def test_calibration_tensors_with_nan_are_one_error(tmp_path):
    model = _mlp(tmp_path / "mlp.onnx")
    x = np.random.default_rng(1).standard_normal((16, 8)).astype(np.float32)
    x[3, 2] = np.nan
    np.savez(tmp_path / "calib.npz", x=x)
    recipe = Recipe.from_flags(backend="onnxruntime", quantize="static", calibration=str(tmp_path / "calib.npz"))
    with pytest.raises(DataError, match="calib.npz: x holds 1 NaN or infinite values"):
        compile(model, "x86-64-avx2", tmp_path / "out", recipe)


def test_histogram_calibration_on_text_is_refused(bert_folders, tmp_path):
    texts = tmp_path / "calib.txt"
    texts.write_text("\n".join(f"a short text number {i}" + " and more" * (i % 5) for i in range(16)) + "\n")
    recipe = Recipe.from_flags(
        backend="onnxruntime", quantize="static", calibration=str(texts), calibration_method="percentile"
    )
    with pytest.raises(CompileError, match="--calibration-method percentile needs inputs of one shape"):
        compile(bert_folders["sequence"], "x86-64-avx2", tmp_path / "out", recipe)


def test_int8_slower_than_float_is_said_loudly():
    from types import SimpleNamespace

    from edgekiln.compiler.passes.quantize import slower_warning

    def report(chosen, slower, op):
        return SimpleNamespace(
            int8_slower_than_float=slower, chosen=chosen, speedup=0.09, layers=[SimpleNamespace(op=op)]
        )

    said = slower_warning(report("dynamic", True, "Conv"))
    assert said.startswith("int8 (dynamic) runs at 0.09x") and "--quantize static --calibration" in said
    assert "compile without --quantize" in slower_warning(report("static", True, "MatMul"))
    assert slower_warning(report("dynamic", False, "Conv")) is None
    assert slower_warning(report("float", True, "Conv")) is None  # auto kept float: nothing to warn about


def test_backend_auto_refuses_before_building_anything(tmp_path, monkeypatch):
    import edgekiln.compiler.selection as selection
    from edgekiln.compiler.selection import SelectionConfig, select_build
    from edgekiln.targets import load_profile

    monkeypatch.setattr(selection, "_build", lambda *a, **k: pytest.fail("built a candidate before refusing"))
    model, profile = _mlp(tmp_path / "mlp.onnx"), load_profile("x86-64-avx2")
    dev = tmp_path / "dev.npz"
    np.savez(dev, x=np.zeros((8, 8), np.float32))
    with pytest.raises(CompileError, match="a raw-tensor model has no labelled metric"):
        select_build(
            model, profile, tmp_path / "out", Recipe.from_flags(eval_data=str(dev)), SelectionConfig(accuracy_budget=1)
        )
    quantized = Recipe.from_flags(eval_data=str(dev), quantize="dynamic")
    with pytest.raises(CompileError, match="builds its own int8 candidates"):
        select_build("some-folder", profile, tmp_path / "out", quantized, SelectionConfig(accuracy_budget=1))
    import edgekiln.targets.host as host

    monkeypatch.setattr(host, "cuda_here", lambda: False)
    with pytest.raises(CompileError, match="nvidia-cuda's artifacts run on a CUDA GPU, which this machine lacks"):
        select_build(
            "some-folder",
            load_profile("nvidia-cuda"),
            tmp_path / "out",
            Recipe.from_flags(eval_data=str(dev)),
            SelectionConfig(accuracy_budget=1),
        )


def test_backend_auto_removes_an_interrupted_selections_candidates(tmp_path):
    from edgekiln.compiler.selection import _remove_stale

    stale, other, mine = (tmp_path / name for name in (".out.candidates-0123abcd", ".out2.candidates-0123abcd", "x"))
    for folder in (stale, other, mine):
        folder.mkdir()
    _remove_stale(tmp_path / "out")
    assert not stale.exists() and other.exists() and mine.exists()


def test_inspect_quantization_as_json(tmp_path, capsys):
    import json

    from edgekiln.cli.main import main

    model = _mlp(tmp_path / "mlp.onnx")
    built = compile(model, "x86-64-avx2", tmp_path / "int8", Recipe.from_flags(quantize="dynamic"))
    capsys.readouterr()
    assert main(["inspect", str(built.path), "--quantization", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["chosen"] == "dynamic" and [row["op"] for row in report["layers"]] == ["MatMul"]
    assert main(["inspect", str(model), "--quantization"]) == 2
    assert "an .onnx file has none yet" in capsys.readouterr().err


@pytest.mark.parametrize("backend", ["openvino", "tvm"])
def test_sequence_buckets_past_the_models_length_are_refused(bert_folders, tmp_path, backend):
    """Refused before the pass cache is asked: a cached build with lengths the model takes (TVM: the
    profile's 32,64,128 cut to 64; the same cache key) must not let the longer ones through."""
    pytest.importorskip(backend)
    warm = Recipe.from_flags(backend=backend, sequence_buckets=(32, 64) if backend == "openvino" else None)
    compile(bert_folders["sequence"], "x86-64-avx2", tmp_path / "warm", warm)
    recipe = Recipe.from_flags(backend=backend, sequence_buckets=(32, 64, 128))
    with pytest.raises(CompileError, match="--sequence-buckets 32,64,128: this model reads at most 64 tokens"):
        compile(bert_folders["sequence"], "x86-64-avx2", tmp_path / "out", recipe)


def test_an_int8_fidelity_over_its_limits_says_so():
    from edgekiln.runtime.reports.schema import FidelityReport

    common = dict(
        reference="the float model", candidate="int8 (static)", output_kind="classifier", shapes=(),
        max_abs_diff=0.4, min_cosine=0.9, argmax_agreement=1.0, max_relative_error=0.49,
        thresholds={"max_relative_error": 0.25},
    )  # fmt: skip
    assert "OVER THE LIMITS (max_relative_error 0.25)" in FidelityReport(**common, passed=False).summary()
    assert "OVER" not in FidelityReport(**common, passed=True).summary()


def test_a_tiny_eval_set_for_a_budget_is_warned_about(bert_folders, tmp_path):
    from edgekiln.compiler.quantization.inputs import quantization_inputs
    from edgekiln.compiler.sources import resolve_source

    dev = tmp_path / "dev.tsv"
    dev.write_text("sentence\tlabel\na fine film\tpositive\n")
    source = resolve_source(str(bert_folders["sequence"]), work_dir=tmp_path)
    with pytest.warns(UserWarning, match="holds 1 examples: an accuracy drop is measured in steps of 100 points"):
        quantization_inputs(source, None, 8, str(dev))


def test_eval_tags_the_token_model_lacks_are_refused_naming_the_model(bert_folders, tmp_path):
    """Checked before calibration, naming the model folder (it named the build's float.onnx, after it)."""
    from edgekiln.compiler.quantization.inputs import quantization_inputs
    from edgekiln.compiler.sources import resolve_source

    dev = tmp_path / "dev.conll"
    dev.write_text("Paris B-CITY\nis O\n\nRome B-CITY\n")
    source = resolve_source(str(bert_folders["token"]), work_dir=tmp_path)
    with pytest.raises(DataError, match=rf"labels \['B-CITY'\] in {dev} are not among {source.description}'s"):
        quantization_inputs(source, None, 8, str(dev))
