"""edgekiln's default CPU schedules for TVM (compiler/tvm_build/cpu_*.py): single-op ONNX models and
a tiny BERT built through them match ONNX Runtime, and the matrix products are the matmul rule's."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tvm", reason="the tvm extra is not installed")

from edgekiln.compiler import Recipe, compile  # noqa: E402

# Targets this machine runs: AVX2 (8 lanes, 4 x 16 tiles) and plain x86-64 (SSE: 4 lanes, 4 x 8).
TARGETS = [{"kind": "llvm", "num-cores": 2, "mcpu": "haswell"}, {"kind": "llvm", "num-cores": 2}]
ATOL, RTOL = 1e-4, 1e-4


def _model(tmp_path, nodes, inputs: dict, initializers: dict, output_shape, opset=17):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        nodes,
        "op",
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, list(a.shape)) for name, a in inputs.items()],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(output_shape))],
        [numpy_helper.from_array(a, name) for name, a in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / "op.onnx"
    onnx.save(model, str(path))
    return path


def _ort(path, feeds):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


def _tvm(path, feeds, target: dict):
    """Built through build(); returns (output, kernel name -> default rule)."""
    import tvm
    from tvm import relax

    from edgekiln.compiler.tvm_build.build import build, cpu_lowered
    from edgekiln.compiler.tvm_build.cpu_schedules import default_schedules, scheduled_by
    from edgekiln.compiler.tvm_build.importer import import_fixed, main_inputs

    mod, params = import_fixed(path, {name: list(a.shape) for name, a in feeds.items()})
    tvm_target = tvm.target.Target(target)
    with tvm_target:
        rules = scheduled_by(default_schedules(cpu_lowered(mod, tvm_target, target, None), tvm_target))
    vm = relax.VirtualMachine(build(mod, target), tvm.cpu())
    args = [feeds[name] for name in main_inputs(mod)] + params
    out = vm["main"](*[tvm.runtime.tensor(a) for a in args])
    return (out if hasattr(out, "numpy") else out[0]).numpy(), rules


def _check(path, feeds, target):
    expected = _ort(path, feeds)
    got, rules = _tvm(path, feeds, target)
    np.testing.assert_allclose(got, expected, atol=ATOL, rtol=RTOL)
    return rules


@pytest.mark.parametrize("target", TARGETS, ids=["avx2", "sse"])
def test_matmul_with_sizes_the_tiles_do_not_divide(tmp_path, target):
    from onnx import helper

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 13), np.float32), rng.standard_normal((13, 29), np.float32)
    path = _model(tmp_path, [helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": a}, {"b": b}, (7, 29))
    rules = _check(path, {"a": a}, target)
    assert list(rules.values()).count("matmul") == 1, rules


@pytest.mark.parametrize("target", TARGETS, ids=["avx2", "sse"])
def test_dense_layer_reads_the_weight_as_stored(tmp_path, target):
    """Gemm with a transposed weight and a bias: one fused dense kernel, no transpose kernel."""
    from onnx import helper

    rng = np.random.default_rng(1)
    x, w, bias = (rng.standard_normal(s, np.float32) for s in ((19, 37), (45, 37), (45,)))
    node = helper.make_node("Gemm", ["x", "w", "bias"], ["y"], transB=1)
    rules = _check(_model(tmp_path, [node], {"x": x}, {"w": w, "bias": bias}, (19, 45)), {"x": x}, target)
    assert list(rules.values()) == ["matmul"], rules


def test_batch_matmul(tmp_path):
    from onnx import helper

    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 3, 9, 21), np.float32), rng.standard_normal((2, 3, 21, 33), np.float32)
    path = _model(tmp_path, [helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": a, "b": b}, {}, (2, 3, 9, 33))
    rules = _check(path, {"a": a, "b": b}, TARGETS[0])
    assert list(rules.values()).count("matmul") == 1, rules


def test_softmax(tmp_path):
    """Softmax goes through topi's fast_softmax (a polynomial exp) and dlight's CPU reduction rule."""
    from onnx import helper

    x = (np.random.default_rng(3).standard_normal((2, 5, 37)) * 4).astype(np.float32)
    path = _model(tmp_path, [helper.make_node("Softmax", ["x"], ["y"], axis=-1)], {"x": x}, {}, x.shape)
    rules = _check(path, {"x": x}, TARGETS[0])
    assert rules and set(rules.values()) <= {"reduction", "fallback"}, rules


def test_layernorm_and_gelu(tmp_path):
    """LayerNormalization then an erf GELU (fast_erf) on odd sizes."""
    from onnx import helper

    rng = np.random.default_rng(4)
    x, scale, bias = (rng.standard_normal(s, np.float32) for s in ((3, 7, 29), (29,), (29,)))
    half, root2, one = np.float32(0.5), np.float32(np.sqrt(2.0)), np.float32(1.0)
    nodes = [
        helper.make_node("LayerNormalization", ["x", "scale", "bias"], ["n"], axis=-1, epsilon=1e-5),
        helper.make_node("Div", ["n", "root2"], ["d"]),
        helper.make_node("Erf", ["d"], ["e"]),
        helper.make_node("Add", ["e", "one"], ["p"]),
        helper.make_node("Mul", ["n", "p"], ["m"]),
        helper.make_node("Mul", ["m", "half"], ["y"]),
    ]
    constants = {"scale": scale, "bias": bias, "half": half, "root2": root2, "one": one}
    rules = _check(
        _model(tmp_path, nodes, {"x": x}, {k: np.asarray(v) for k, v in constants.items()}, x.shape),
        {"x": x},
        TARGETS[0],
    )
    assert rules, "no kernel got a default schedule"


def test_tiny_bert_matches_onnxruntime_with_every_matmul_scheduled(bert_folders, tmp_path):
    """The whole pass: its own check against ONNX Runtime (1e-4) passes, and the report counts the
    kernels each default rule scheduled: the projections, FFN and attention products are matmul's."""
    out = compile(
        bert_folders["sequence"],
        "x86-64-avx2",
        tmp_path / "tvm",
        recipe=Recipe.from_flags(backend="tvm", sequence_buckets=(16,)),
    ).path
    report = json.loads((out / "reports" / "lower_tvm.json").read_text())
    rules = report["details"]["cpu_default_schedules"]
    assert rules.get("matmul", 0) >= 4, rules  # dense (Q/K/V/out), FFN up and down, Q.K^T, P.V
    assert report["max_abs_diff"] <= 1e-4, report


def test_a_rule_that_fails_leaves_the_kernel_to_the_next_rule(tmp_path, monkeypatch):
    """A rule raising on a kernel is skipped, never an error: the matmul falls to the fallback rule."""
    from onnx import helper

    from edgekiln.compiler.tvm_build import cpu_schedules

    def broken(func, target):
        raise RuntimeError("cannot schedule this")

    monkeypatch.setattr(cpu_schedules, "schedule_matmul", broken)
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((5, 11), np.float32), rng.standard_normal((11, 17), np.float32)
    path = _model(tmp_path, [helper.make_node("MatMul", ["a", "b"], ["y"])], {"a": a}, {"b": b}, (5, 17))
    rules = _check(path, {"a": a}, TARGETS[0])
    assert "matmul" not in rules.values() and rules, rules
