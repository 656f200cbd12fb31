"""`edgekiln bench --profile`: per-operator time from ONNX Runtime's profiler and OpenVINO's performance
counters, grouped by the layer names the export gives nodes, with the matrix-product share."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekiln.cli.main import main
from edgekiln.compiler import Recipe, compile
from edgekiln.runtime import load
from edgekiln.runtime.bench import feeds_for
from edgekiln.runtime.errors import BackendUnavailableError
from edgekiln.runtime.profile import profile_ops, summarize


def _check_profile(path, expected_layers=("layer 0", "layer 1")):
    session = load(path)
    feeds = feeds_for(session, 2, 16, np.random.default_rng(0))
    ops = profile_ops(path, session.manifest, feeds, runs=3, threads=1)
    assert ops and all(op.ms >= 0 for op in ops)
    summary = summarize(ops, top=5)
    assert len(summary["top_nodes"]) == 5 and 0 < summary["matmul_share"] < 1
    assert sum(row["share"] for row in summary["layers"]) == pytest.approx(1.0, abs=1e-3)
    assert set(expected_layers) <= {row["layer"] for row in summary["layers"]}
    return ops


def test_onnxruntime_profile_names_the_graph_nodes(artifacts):
    import onnx

    ops = _check_profile(artifacts["sequence"])
    nodes = {node.name for node in onnx.load(str(artifacts["sequence"] / "model.onnx")).graph.node}
    assert {op.op_type for op in ops} & {"MatMul", "FusedMatMul", "Gemm", "FusedGemm"}
    assert sum(op.node in nodes or op.node.startswith("fused ") for op in ops) >= len(ops) // 2


def test_openvino_profile_and_the_cli(bert_folders, tmp_path, capsys):
    pytest.importorskip("openvino")
    path = compile(bert_folders["sequence"], "x86-64-avx2", tmp_path / "ov", Recipe.from_flags(backend="openvino")).path
    _check_profile(path)
    assert main(["bench", str(path), "--profile", "--seq", "16", "--runs", "3", "--top", "4"]) == 0
    out = capsys.readouterr().out
    assert "matrix products" in out and "layer 1" in out
    report = json.loads((path / "reports" / "profile.json").read_text())
    assert report["backend"] == "openvino" and len(report["top_nodes"]) == 4
    assert "Where the time goes" in (path / "reports" / "report.html").read_text()


def test_a_backend_without_a_profiler_says_so(artifacts):
    session = load(artifacts["sequence"])
    manifest = session.manifest.model_copy(update={"backend": "tvm"})
    with pytest.raises(BackendUnavailableError, match="tvm backend has no per-operator profiler"):
        profile_ops(artifacts["sequence"], manifest, {}, runs=1, threads=1)
