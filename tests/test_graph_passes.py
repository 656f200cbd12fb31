"""A recipe's [[passes]]: a registered graph pass (a plugin's) runs after ONNX Runtime's optimisation,
its options validated by its Config, and its result checked against the source once more."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgekiln.compiler import CompileError, Recipe, compile
from edgekiln.compiler.passes.base import MODEL_FILE, BuildState, Pass, PassConfig
from edgekiln.compiler.passes.registry import pass_names, register_pass
from edgekiln.runtime import load


class ScaleConfig(PassConfig):
    factor: float = 1.0


@register_pass
class ScaleOutput(Pass):
    """Multiplies the first output by `factor` (1.0: the same function, a different graph)."""

    name = "test_scale_output"
    Config = ScaleConfig
    changes_model = True

    def run(self, state: BuildState, out_dir: Path) -> dict:
        model = onnx.load(state.model_path)
        graph = model.graph
        output = graph.output[0].name
        graph.initializer.append(numpy_helper.from_array(np.array(self.config.factor, np.float32), "scale"))
        for node in graph.node:
            node.output[:] = [f"{name}_raw" if name == output else name for name in node.output]
        graph.node.append(helper.make_node("Mul", [f"{output}_raw", "scale"], [output]))
        onnx.save(model, out_dir / MODEL_FILE)
        return {"factor": self.config.factor}


@pytest.fixture
def mlp(tmp_path) -> Path:
    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        [weight],
    )
    path = tmp_path / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def _recipe(**options) -> Recipe:
    return Recipe(passes=[{"name": "test_scale_output", "options": options}])


def test_a_recipe_pass_runs_is_recorded_and_rebuilds_from_the_stored_recipe(mlp, tmp_path):
    assert "test_scale_output" in pass_names()
    built = compile(mlp, "x86-64-avx2", tmp_path / "out", _recipe(factor=1.0))
    names = [record.name for record in built.manifest.passes]
    assert names == ["check_onnx", "ort_optimize", "verify_fidelity", "test_scale_output", "verify_fidelity"]
    model = onnx.load(tmp_path / "out" / built.manifest.model_file)
    assert [node.op_type for node in model.graph.node][-1] == "Mul"
    x = np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32)
    weight = numpy_helper.to_array(onnx.load(mlp).graph.initializer[0])
    np.testing.assert_allclose(load(built.path).run({"x": x})["y"], x @ weight, rtol=1e-6)
    stored = Recipe.from_file(built.path / "recipe.toml")
    assert stored.passes == _recipe(factor=1.0).passes
    again = compile(mlp, "x86-64-avx2", tmp_path / "again", stored)
    assert again.manifest.artifact_id == built.manifest.artifact_id


def test_a_pass_that_changes_the_results_is_caught_by_the_second_check(mlp, tmp_path):
    with pytest.raises(CompileError, match="differs"):
        compile(mlp, "x86-64-avx2", tmp_path / "out", _recipe(factor=2.0))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("passes", "message"),
    [
        ([{"name": "no_such_pass"}], "unknown pass 'no_such_pass'"),
        ([{"name": "ort_optimize"}], "'ort_optimize' is a built-in pass"),
        ([{"name": "lower_tvm"}], "'lower_tvm' is a built-in pass"),
        ([{"name": "test_scale_output", "options": {"factr": 2}}], "pass 'test_scale_output': option factr"),
        ([{"name": "test_scale_output", "options": {"factor": "big"}}], "option factor"),
    ],
)
def test_bad_recipe_passes_are_one_error_before_any_work(mlp, tmp_path, passes, message):
    with pytest.raises(CompileError, match=message):
        compile(mlp, "x86-64-avx2", tmp_path / "out", Recipe(passes=passes))
    assert not (tmp_path / "out").exists()
