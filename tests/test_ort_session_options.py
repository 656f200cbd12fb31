"""How the runtime opens ONNX Runtime sessions: CPU sessions keep Add + LayerNormalization unfused
(ONNX Runtime's CPU SkipLayerNormalization kernel is several times slower; benchmarks/README.md)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from edgekiln.runtime import load
from edgekiln.runtime.backends.onnxruntime import CPU_DISABLED_OPTIMIZERS


def test_cpu_sessions_are_opened_without_the_skip_layer_norm_fusion(artifacts, monkeypatch):
    seen = []
    real = ort.InferenceSession

    def spy(*args, **kwargs):
        seen.append(kwargs.get("disabled_optimizers"))
        return real(*args, **kwargs)

    monkeypatch.setattr(ort, "InferenceSession", spy)
    load(artifacts["sequence"], device="cpu")
    assert seen and "SkipLayerNormFusion" in seen[-1]


def test_the_disabled_fusion_leaves_add_and_layer_norm_in_the_graph(tmp_path):
    """ONNX Runtime names the fusion as the constant does: with it disabled the optimised graph keeps
    Add + LayerNormalization, with it enabled they become SkipLayerNormalization."""
    hidden = 8
    scale = helper.make_tensor("g", TensorProto.FLOAT, [hidden], np.ones(hidden).tolist())
    bias = helper.make_tensor("b", TensorProto.FLOAT, [hidden], np.zeros(hidden).tolist())
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "s"], ["t"]), helper.make_node("LayerNormalization", ["t", "g", "b"], ["y"])],
        "skip",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, "L", hidden]) for n in ("x", "s")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, "L", hidden])],
        [scale, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    ops = {}
    for label, disabled in (("fused", None), ("ours", list(CPU_DISABLED_OPTIMIZERS))):
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"{label}.onnx")
        ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled
        )
        ops[label] = [node.op_type for node in onnx.load(str(tmp_path / f"{label}.onnx")).graph.node]
    assert ops["fused"] == ["SkipLayerNormalization"]
    assert ops["ours"] == ["Add", "LayerNormalization"]
