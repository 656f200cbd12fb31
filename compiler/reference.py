"""The unoptimised PyTorch model as a runner, for `edgekiln bench --against` and quickstart."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import CompileError
from .sources import resolve_source

Runner = Callable[[dict[str, np.ndarray]], object]


def pytorch_runner(model: str | Path, threads: int) -> Runner:
    """PyTorch eager in inference mode with `threads` intra-op threads, fed the artifact's arrays."""
    import torch

    with tempfile.TemporaryDirectory(prefix="edgekiln-ref-") as work_dir:
        source = resolve_source(str(model), work_dir=Path(work_dir))
    if source.torch is None:
        raise CompileError(f"--against needs a PyTorch model (a Hugging Face folder); {model} is not one")
    torch.set_num_threads(threads)
    module = source.torch.build()
    names = source.torch.input_names

    def run(feeds: dict[str, np.ndarray]):
        missing = [name for name in names if name not in feeds]
        if missing:
            raise CompileError(
                f"the PyTorch model takes inputs {list(names)}; the artifact provides {sorted(feeds)}",
                hint="compare an artifact with the model it was compiled from",
            )
        with torch.inference_mode():
            return module(*(torch.from_numpy(feeds[name]) for name in names))

    return run
