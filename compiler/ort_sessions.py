"""ONNX Runtime CPU sessions for the compiler's own checks (fidelity, scoring, diagnostics)."""

from __future__ import annotations

import os
from pathlib import Path

from edgekiln.runtime.backends.onnxruntime import CPU_DISABLED_OPTIMIZERS
from edgekiln.runtime.cpus import available_cpus


def cpu_session(
    model: Path | bytes, *, threads: int | None = None, optimize: bool = True, data_folder: Path | None = None
):
    """A quiet CPU session, optimised as the runtime does; `optimize=False` runs the graph exactly as written (a reference);
    `data_folder`: where a model given as bytes finds its external-data files."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # errors come back as exceptions (one line each); not logged as well
    if threads is None and available_cpus() < (os.cpu_count() or 1):
        threads = available_cpus()  # ONNX Runtime's default counts the machine's cores, not this process's
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    if data_folder is not None:
        options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(data_folder))
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(
        source, options, providers=["CPUExecutionProvider"], disabled_optimizers=list(CPU_DISABLED_OPTIMIZERS)
    )
