"""The unoptimised PyTorch model as a runner, for `edgekiln bench --against` and quickstart."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import CompileError
from .sources import resolve_source

Runner = Callable[[dict[str, np.ndarray]], object]


def pytorch_runner(model: str | Path, threads: int, manifest=None, recipe=None) -> Runner:
    """PyTorch eager in inference mode with `threads` intra-op threads, fed the artifact's arrays; with the
    artifact's `manifest`, a model of another task or label count is refused (its timings would compare
    another computation); the artifact's `recipe` gives the task and pooling it was compiled with."""
    import torch

    with tempfile.TemporaryDirectory(prefix="edgekiln-ref-") as work_dir:
        source = resolve_source(str(model), work_dir=Path(work_dir))
        if manifest is not None and source.task.value != manifest.task.value and recipe is not None:
            chosen = recipe.source  # compiled with --task (and --pooling): build the model the same way
            if chosen.task is not None and chosen.task.value == manifest.task.value:
                source = resolve_source(str(model), work_dir=Path(work_dir), task=chosen.task, pooling=chosen.pooling)
    if source.torch is None:
        raise CompileError(f"--against needs a PyTorch model (a Hugging Face folder); {model} is not one")
    if manifest is not None:
        _check_same_model(model, source, manifest)
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


def _check_same_model(model, source, manifest) -> None:
    hint = "compare an artifact with the model it was compiled from"
    if source.task.value != manifest.task.value:
        article = "an" if source.task.value[0] in "aeiou" else "a"
        raise CompileError(
            f"--against {model} is {article} {source.task.value} model; the artifact does {manifest.task.value}",
            hint=hint,
        )
    if source.labels is not None and manifest.labels is not None and len(source.labels) != len(manifest.labels):
        raise CompileError(
            f"--against {model} has {len(source.labels)} labels; the artifact {len(manifest.labels)}", hint=hint
        )
