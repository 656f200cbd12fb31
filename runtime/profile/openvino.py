"""OpenVINO's performance counters: per executed node, real time per inference."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..manifest import Manifest, Precision
from . import OpTime


def profile(folder: Path, manifest: Manifest, feeds: dict[str, np.ndarray], runs: int, threads: int) -> list[OpTime]:
    import openvino as ov

    precision = "bf16" if manifest.precision is Precision.BF16 else "f32"
    compiled = ov.Core().compile_model(
        str(folder / manifest.model_file),
        "CPU",
        {
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": precision,
            "PERF_COUNT": True,
            "ENABLE_CPU_PINNING": False,  # as the session runs it (runtime/backends/openvino.py)
        },
    )
    request = compiled.create_infer_request()
    for _ in range(3):
        request.infer(feeds)
    totals, types = defaultdict(float), {}
    for _ in range(runs):
        request.infer(feeds)
        for info in request.get_profiling_info():
            if info.status != info.Status.EXECUTED:
                continue
            totals[info.node_name] += info.real_time.total_seconds() * 1e3
            types[info.node_name] = info.node_type
    return [OpTime(name, types[name], ms / runs) for name, ms in totals.items()]
