"""int8 on TVM (compiler/tvm_build/int8_*.py): a QDQ model from edgekiln's own static int8 pass runs
its quantized matrix products as integer kernels (int32 accumulation, VNNI where the target has it)
and matches ONNX Runtime's int8 output.

Tolerance: the integer products are exact and the zero-point corrections are done in int32, so the
only differences from ONNX Runtime are float roundings in the dequantize multiply (scale_x *
scale_w, applied in another order), which can move the re-quantized activation between the two
products by one step; the output (float: the pass leaves a graph output of a MatMul unquantized) may
therefore differ by less than one int8 step of its own range."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tvm", reason="the tvm extra is not installed")

VNNI = {"kind": "llvm", "num-cores": 2, "mcpu": "cascadelake"}  # AVX512-VNNI: vpdpbusd
AVX512BW = {"kind": "llvm", "num-cores": 2, "mcpu": "skylake-avx512"}  # no VNNI: int32 loops (vpmaddubsw saturates)
AVX2 = {"kind": "llvm", "num-cores": 2, "mcpu": "haswell"}  # no 512-bit integer dot product: int32 loops
SEQ, D, H = 8, 32, 64


def _host_has(flag: str) -> bool:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    return any(line.startswith("flags") and flag in line.split() for line in text.splitlines())


def _runs_here(target: dict) -> bool:
    needs = {"cascadelake": "avx512_vnni", "skylake-avx512": "avx512bw", "haswell": "avx2"}[target["mcpu"]]
    return _host_has(needs)


def _qdq_model(tmp_path: Path, gemm: bool, signed: bool = False) -> tuple[Path, dict]:
    """A float MLP (MatMul + bias + Relu + MatMul, or Gemm(transB) + Relu + MatMul on 2-D input),
    quantized by edgekiln's static int8 pass (QDQ, per-channel int8 weights, uint8 activations or,
    `signed`, symmetric int8 ones)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgekiln.compiler.quantization.calibration import CalibrationSet
    from edgekiln.compiler.quantization.config import IntType, QuantizeConfig, QuantMode
    from edgekiln.compiler.quantization.ort_quantize import quantize_model

    rng = np.random.default_rng(0)
    shape = [SEQ, D] if gemm else [1, SEQ, D]
    first = (
        [helper.make_node("Gemm", ["x", "w1", "b1"], ["a1"], transB=1)]
        if gemm
        else [helper.make_node("MatMul", ["x", "w1"], ["m1"]), helper.make_node("Add", ["m1", "b1"], ["a1"])]
    )
    w1 = rng.normal(0, 0.2, (H, D) if gemm else (D, H)).astype(np.float32)
    weights = {"w1": w1, "b1": rng.normal(0, 0.1, H).astype(np.float32)}
    weights["w2"] = rng.normal(0, 0.2, (H, D)).astype(np.float32)
    nodes = [*first, helper.make_node("Relu", ["a1"], ["r1"]), helper.make_node("MatMul", ["r1", "w2"], ["y"])]
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)],
        [numpy_helper.from_array(a, name) for name, a in weights.items()],
    )
    float_path, int8_path = tmp_path / "mlp.onnx", tmp_path / "mlp_int8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(float_path))
    feeds = tuple({"x": rng.normal(0, 1, shape).astype(np.float32)} for _ in range(8))
    calibration = CalibrationSet(feeds=feeds, samples=8, source="test", sha256="0")
    activations = IntType.INT8 if signed else IntType.UINT8  # int8: the ARM profiles' S8S8
    config = QuantizeConfig(mode=QuantMode.STATIC, activation_type=activations)
    quantize_model(float_path, int8_path, config, calibration, tmp_path)
    return int8_path, {"x": rng.normal(0, 1, shape).astype(np.float32)}


def _output_step(expected: np.ndarray) -> float:
    """One int8 step of the output's range (the output itself stays float)."""
    return float(np.abs(expected).max()) / 127


def _lowered_and_built(path: Path, feeds: dict, target: dict):
    """(kernel name -> default rule, the scheduled module, the executable, the weights)."""
    import tvm

    from edgekiln.compiler.tvm_build.build import build, cpu_lowered
    from edgekiln.compiler.tvm_build.cpu_schedules import default_schedules, scheduled_by
    from edgekiln.compiler.tvm_build.importer import import_fixed

    mod, params = import_fixed(path, {name: list(a.shape) for name, a in feeds.items()})
    tvm_target = tvm.target.Target(target)
    with tvm_target:
        scheduled = default_schedules(cpu_lowered(mod, tvm_target, target, None), tvm_target)
    used: dict[str, int] = {}
    executable = build(mod, target, defaults=used)
    assert used, "the default schedules did not compile (build() fell back to unscheduled kernels)"
    return scheduled_by(scheduled), scheduled, executable, params


def _run(executable, feeds: dict, params: list) -> np.ndarray:
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(executable, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(a) for a in [*feeds.values(), *params]])
    return (out if hasattr(out, "numpy") else out[0]).numpy()


def _ort(path: Path, feeds: dict) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]


@pytest.mark.parametrize("gemm", [False, True], ids=["matmul", "gemm"])
@pytest.mark.parametrize("target", [VNNI, AVX512BW, AVX2], ids=["vnni", "avx512bw", "avx2"])
def test_int8_products_are_integer_kernels_matching_onnxruntime(tmp_path, target, gemm):
    path, feeds = _qdq_model(tmp_path, gemm)
    rules, scheduled, executable, params = _lowered_and_built(path, feeds, target)
    integer = [name for name, rule in rules.items() if rule == "int8_matmul"]
    assert len(integer) == 2, rules  # both quantized products; fails if the rewrite is removed
    assert not [name for name in rules if "qweight" in name], rules  # packed once at import, not per call
    text = scheduled.script()
    if target is VNNI:
        assert text.count("vpdpbusd") == 2, "one tensorized vpdpbusd body per integer kernel"  # noqa: PLR2004
    else:
        assert "llvm.x86" not in text
    if not _runs_here(target):
        pytest.skip(f"this CPU cannot run {target['mcpu']} code (built and checked only)")
    found, expected = _run(executable, feeds, params), _ort(path, feeds)
    step = _output_step(expected)
    assert np.abs(found - expected).max() <= step * 1.001, (np.abs(found - expected).max(), step)
    assert np.mean(found != expected) <= 0.02  # noqa: PLR2004  (one-step flips are rare)


def test_signed_activations_use_the_int32_path(tmp_path):
    """S8S8 (the ARM profiles' types): integer kernels without VNNI (vpdpbusd is unsigned x signed)."""
    path, feeds = _qdq_model(tmp_path, gemm=False, signed=True)
    rules, scheduled, executable, params = _lowered_and_built(path, feeds, VNNI)
    assert sum(rule == "int8_matmul" for rule in rules.values()) == 2, rules  # noqa: PLR2004
    assert "vpdpbusd" not in scheduled.script()
    if not _runs_here(VNNI):
        pytest.skip("this CPU cannot run cascadelake code (built and checked only)")
    found, expected = _run(executable, feeds, params), _ort(path, feeds)
    assert np.abs(found - expected).max() <= _output_step(expected)


def test_float_models_keep_their_float_products(tmp_path):
    """The rewrite touches only dequantized operands: an fp32 model has no integer kernel."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.random.default_rng(0).normal(0, 0.2, (D, H)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "mm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, SEQ, D])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, SEQ, H])],
        [numpy_helper.from_array(w, "w")],
    )
    path = tmp_path / "mm.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    rules, *_ = _lowered_and_built(path, {"x": np.zeros((1, SEQ, D), np.float32)}, AVX2)
    assert "int8_matmul" not in rules.values() and "matmul" in rules.values()


@pytest.mark.slow  # the whole pass with its check: about two minutes on 2 busy cores
def test_a_qdq_onnx_file_compiles_for_tvm_with_integer_kernels(tmp_path):
    """The whole TVM pass on a QDQ file (`--backend tvm`, the file already int8): the integer
    kernels, weights stored packed in the artifact, and the pass's own same-ONNX check (1e-4 against
    ONNX Runtime) passes on this tiny model."""
    import json

    from edgekiln.compiler import Recipe, compile

    path, _ = _qdq_model(tmp_path, gemm=False)
    built = compile(path, "host", tmp_path / "tvm", recipe=Recipe.from_flags(backend="tvm"))
    out = built.path
    assert built.manifest.precision.value == "int8"  # the file's own int8, though nothing quantized it here
    report = json.loads((out / "reports" / "lower_tvm.json").read_text())
    assert report["details"]["cpu_default_schedules"].get("int8_matmul") == 2, report  # noqa: PLR2004
    assert report["passed"] and report["max_abs_diff"] <= 1e-4, report  # noqa: PLR2004
    stored = np.load(out / "tvm_params.npz")
    packed = [stored[k].shape for k in stored.files if stored[k].ndim == 4 and stored[k].dtype == np.int8]
    assert sorted(packed) == [(D // 16, H // 4, 16, 4), (H // 16, D // 4, 16, 4)], packed


def test_an_int8_onnx_file_compiled_as_it_is_is_recorded_int8(tmp_path):
    """No --quantize, but the file is QDQ int8: the manifest's precision says what runs (int8), so
    `verify` holds it to the int8 check and `inspect` does not call it fp32."""
    from edgekiln.compiler import Recipe, compile

    path, _ = _qdq_model(tmp_path, gemm=False)
    built = compile(path, "host", tmp_path / "ort", recipe=Recipe.from_flags(backend="onnxruntime"))
    assert built.manifest.precision.value == "int8" and built.manifest.quantization is None
