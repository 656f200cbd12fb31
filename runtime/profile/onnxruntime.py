"""ONNX Runtime's profiler: one trace event per node per run ("cat": "Node", kernel time in µs)."""

from __future__ import annotations

import json
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..backends.onnxruntime import CPU_DISABLED_OPTIMIZERS
from ..manifest import Manifest
from . import OpTime

WARMUP = 3


def profile(folder: Path, manifest: Manifest, feeds: dict[str, np.ndarray], runs: int, threads: int) -> list[OpTime]:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="edgekiln-ort-profile-") as scratch:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(scratch) / "ort")
        options.log_severity_level = 3
        session = ort.InferenceSession(
            str(folder / manifest.model_file),
            options,
            providers=["CPUExecutionProvider"],
            disabled_optimizers=list(CPU_DISABLED_OPTIMIZERS),  # as the session runs it
        )
        for _ in range(WARMUP + runs):
            session.run(None, feeds)
        trace = json.loads(Path(session.end_profiling()).read_text())
    events = [e for e in trace if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    per_run = len(events) // (WARMUP + runs)  # every run executes the same nodes, in order
    totals, types = defaultdict(float), {}
    for event in events[WARMUP * per_run :]:
        name = event["name"].removesuffix("_kernel_time")
        totals[name] += event["dur"] / 1e3
        types[name] = event.get("args", {}).get("op_name", "?")
    return [OpTime(name, types[name], ms / runs) for name, ms in totals.items()]
