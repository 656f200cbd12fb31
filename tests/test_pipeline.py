"""Pass contract, registry, cache, and the never-half-written guarantee."""

from __future__ import annotations

import pytest

from edgekiln.compiler import CompileError, FidelityConfig, FidelityError, Recipe, compile
from edgekiln.compiler.cache import PassCache
from edgekiln.compiler.passes.base import BuildState
from edgekiln.compiler.passes.export_onnx import ExportConfig, ExportOnnx
from edgekiln.compiler.passes.ort_optimize import OrtOptimize
from edgekiln.compiler.passes.registry import get_pass, pass_names


def test_registry_lists_builtin_passes_and_rejects_unknown():
    assert {
        "export_onnx",
        "check_onnx",
        "ort_optimize",
        "verify_fidelity",
        "lower_openvino",
        "lower_tvm",
        "quantize",
        "quantize_openvino",
    } <= set(pass_names())
    assert get_pass("export_onnx") is ExportOnnx
    with pytest.raises(CompileError, match="unknown pass 'prune'.*export_onnx"):
        get_pass("prune")


def test_configs_are_frozen_and_reject_unknown_keys():
    with pytest.raises(ValueError, match="extra"):
        ExportConfig(opset=18, dynamic=True)
    config = ExportConfig()
    with pytest.raises(ValueError):
        config.opset = 12
    with pytest.raises(ValueError):
        ExportConfig(opset=7)
    with pytest.raises(CompileError, match="takes a OrtOptimizeConfig"):
        OrtOptimize(ExportConfig())


def test_pass_preconditions_are_checked(bert_folders):
    from edgekiln.compiler.sources import resolve_source

    source = resolve_source(str(bert_folders["sequence"]), work_dir=bert_folders["sequence"].parent)
    with pytest.raises(CompileError, match="needs an ONNX model"):
        OrtOptimize().check_preconditions(BuildState(source=source))


def test_cache_computes_once_per_key(tmp_path):
    cache = PassCache(tmp_path / "cache", tmp_path)
    calls = []

    def work(folder):
        calls.append(folder)
        (folder / "out.txt").write_text("x")

    first, hit1 = cache.run("ab" * 32, work)
    second, hit2 = cache.run("ab" * 32, work)
    assert (hit1, hit2) == (False, True) and first == second and len(calls) == 1
    assert (second / "out.txt").read_text() == "x"


def test_failed_pass_leaves_no_cache_entry_and_no_output(tmp_path):
    cache = PassCache(tmp_path / "cache", tmp_path)

    def explode(folder):
        (folder / "partial").write_text("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.run("cd" * 32, explode)
    assert not any((tmp_path / "cache").rglob("partial"))


def _matmul_onnx(path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 3), dtype=np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[weight],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("caching", [False, True])
def test_without_caching_only_the_folders_the_state_points_into_stay(tmp_path, caching):
    """Caching off: a pass's folder is deleted once a later pass replaced its model (a 2.4 GB model
    left a copy per pass until the build ended: 13.7 GB on disk at the peak). Caching on keeps them."""
    from edgekiln.compiler.passes.check_onnx import CheckOnnx
    from edgekiln.compiler.pipeline import run_passes
    from edgekiln.compiler.sources import resolve_source

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    source = resolve_source(str(_matmul_onnx(tmp_path / "m.onnx")), work_dir=tmp_path)
    cache = PassCache(tmp_path / "cache" if caching else None, scratch)
    state, records = run_passes([CheckOnnx(), OrtOptimize()], BuildState(source=source), cache)
    assert [record.name for record in records] == ["check_onnx", "ort_optimize"] and state.model_path.exists()
    if caching:
        assert len(list((tmp_path / "cache" / "passes").glob("*/*"))) == 2 and not any(scratch.iterdir())
    else:
        assert list(scratch.iterdir()) == [state.model_path.parent]


def test_fidelity_failure_writes_nothing(bert_folders, tmp_path):
    impossible = FidelityConfig(max_abs_diff=1e-30, min_cosine=1.0, max_relative_error=1e-30)
    with pytest.raises(FidelityError, match=r"max error .* of the logit range \(limit 1e-30\)"):
        compile(
            bert_folders["sequence"], "x86-64-avx2", tmp_path / "out", recipe=Recipe.from_flags(fidelity=impossible)
        )
    assert list(tmp_path.iterdir()) == []  # no artifact, no staging or build folder
