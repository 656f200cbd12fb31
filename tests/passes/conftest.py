"""A tiny ONNX fixture built in the test (a two-layer MLP with a dynamic batch axis) and the state a
pass sees after `check_onnx`, so each pass can be run and checked on its own."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekiln.compiler.cache import PassCache
from edgekiln.compiler.passes.base import BuildState
from edgekiln.compiler.passes.check_onnx import CheckOnnx
from edgekiln.compiler.pipeline import run_passes
from edgekiln.compiler.sources.onnx_file import from_onnx_file


def tiny_mlp(path: Path, seed: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    weights = [
        numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)
        for name, shape in (("w1", (16, 32)), ("b1", (32,)), ("w2", (32, 4)))
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"], name="fc1/MatMul"),
        helper.make_node("Add", ["h", "b1"], ["hb"], name="fc1/Add"),
        helper.make_node("Relu", ["hb"], ["r"], name="relu"),
        helper.make_node("MatMul", ["r", "w2"], ["y"], name="fc2/MatMul"),
    ]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(path))
    return path


@pytest.fixture
def checked(tmp_path) -> tuple[BuildState, PassCache]:
    """(the state after check_onnx, a cache without reuse) for the tiny MLP."""
    source = from_onnx_file(tiny_mlp(tmp_path / "mlp.onnx"))
    store = PassCache(None, tmp_path)
    state, _ = run_passes([CheckOnnx()], BuildState(source=source), store)
    return state, store


def run_onnx(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
