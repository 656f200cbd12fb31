"""`edgekiln bench --profile`: where the time goes, from each backend's own profiler.

A backend's spec names its profiler (`BackendSpec.profiler`: "module:function" taking
(folder, manifest, feeds, runs, threads) and returning `OpTime`s, milliseconds per run). This module
groups them by the module names the export gives nodes (`…layer.3.attention…`) and by operator type,
and reports the share of time in matrix products, so a user sees what pruning or int8 can still win.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..backends import backend_spec
from ..backends.spec import load_object
from ..errors import BackendUnavailableError
from ..manifest import Manifest

# Operator types that are matrix products, in ONNX and in OpenVINO's executed graph.
MATMUL_TYPES = frozenset(
    {
        "MatMul",
        "Gemm",
        "MatMulInteger",
        "QLinearMatMul",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
        "FusedMatMul",
        "FusedGemm",
        "FullyConnected",
        "FullyConnectedCompressed",
        "Conv",
        "QLinearConv",
        "ConvInteger",
        "Convolution",
        "GroupConvolution",
        "GemmInteger",
    }
)
_LAYER = re.compile(r"layers?[._/](\d+)")


@dataclass(frozen=True)
class OpTime:
    node: str
    op_type: str
    ms: float  # per run


def profile_ops(
    folder: Path, manifest: Manifest, feeds: dict[str, np.ndarray], *, runs: int, threads: int
) -> list[OpTime]:
    spec = backend_spec(manifest.backend)
    if spec.profiler is None:
        raise BackendUnavailableError(
            f"the {spec.name} backend has no per-operator profiler in this edgekiln",
            hint="profile an onnxruntime or openvino artifact of the same model",
        )
    return load_object(spec.profiler)(folder, manifest, feeds, runs, threads)


def summarize(ops: list[OpTime], top: int = 15) -> dict:
    """Top nodes, time per layer and per operator type, and the matrix-product share."""
    total = sum(op.ms for op in ops) or 1e-12
    by_layer, by_type = defaultdict(float), defaultdict(float)
    for op in ops:
        by_layer[layer_of(op.node)] += op.ms
        by_type[op.op_type] += op.ms
    matmul = sum(op.ms for op in ops if op.op_type in MATMUL_TYPES)
    return {
        "total_ms": round(total, 4),
        "matmul_ms": round(matmul, 4),
        "matmul_share": round(matmul / total, 4),
        "top_nodes": [
            {"node": op.node, "op_type": op.op_type, "ms": round(op.ms, 4), "share": round(op.ms / total, 4)}
            for op in sorted(ops, key=lambda o: -o.ms)[:top]
        ],
        "layers": [
            {"layer": name, "ms": round(ms, 4), "share": round(ms / total, 4)}
            for name, ms in sorted(by_layer.items(), key=_layer_order)
        ],
        "op_types": [
            {"op_type": name, "ms": round(ms, 4), "share": round(ms / total, 4)}
            for name, ms in sorted(by_type.items(), key=lambda item: -item[1])
        ],
    }


def layer_of(node: str) -> str:
    found = _LAYER.search(node)
    if found:
        return f"layer {int(found.group(1))}"
    return "embeddings" if "embedding" in node.lower() else "other (head, pooling, glue)"


def _layer_order(item: tuple[str, float]) -> tuple:
    name = item[0]
    if name.startswith("layer "):
        return (1, int(name.split()[1]))
    return (0 if name == "embeddings" else 2, 0)


def format_profile(summary: dict, top: int = 15) -> str:
    lines = [
        f"total {summary['total_ms']:.3f} ms per run (operator time); matrix products "
        f"{summary['matmul_share']:.1%} ({summary['matmul_ms']:.3f} ms)",
        "",
        f"{'ms':>9}  {'share':>6}  {'op':22s} node",
    ]
    lines += [
        f"{row['ms']:9.4f}  {row['share']:6.1%}  {row['op_type'][:22]:22s} {row['node']}"
        for row in summary["top_nodes"][:top]
    ]
    lines += ["", f"{'ms':>9}  {'share':>6}  layer"]
    lines += [f"{row['ms']:9.4f}  {row['share']:6.1%}  {row['layer']}" for row in summary["layers"]]
    return "\n".join(lines)
