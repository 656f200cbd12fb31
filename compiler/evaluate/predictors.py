"""One interface over an artifact (runtime, no torch) and a Hugging Face checkpoint (PyTorch), so
evaluation and fine-tuning measure every model through the same tokenizer and post-processing."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekiln.runtime import load
from edgekiln.runtime.images.preprocess import ImagePreprocessor
from edgekiln.runtime.images.spec import ImagePreprocessSpec, Layout
from edgekiln.runtime.manifest import MANIFEST_FILE, Task, TensorSpec, TokenizerSpec
from edgekiln.runtime.preprocess import TextEncoder

from ..errors import CompileError
from ..sources.base import is_timm, is_timm_folder

Logits = Callable[[dict[str, np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class Predictor:
    name: str
    task: Task
    labels: tuple[str, ...]
    encoder: TextEncoder | ImagePreprocessor
    logits: Logits  # feeds -> [batch, labels] or [batch, seq, labels]
    one_at_a_time: bool = False  # an artifact whose answers change with padding: one text per call


def open_predictor(
    target: str | Path,
    *,
    threads: int | None = None,
    weights: str | Path | None = None,
    labels: tuple[str, ...] | None = None,
) -> Predictor:
    """An artifact folder (has manifest.json), a Hugging Face checkpoint folder, or timm:NAME with its
    `weights` file (and class `labels` where its head has no known names)."""
    path = Path(target)
    if (path / MANIFEST_FILE).is_file():
        return artifact_predictor(path, threads=threads)
    return checkpoint_predictor(path, weights=weights, labels=labels)


def artifact_predictor(path: Path, *, threads: int | None = None) -> Predictor:
    session = load(path, threads=threads)
    _check_task(path, session.task)
    output = session.manifest.outputs[0].name
    return Predictor(
        f"artifact {path.name}",
        session.task,
        _labels(session.manifest.labels, path),
        session.encoder,
        lambda feeds: session.run(feeds)[output],
        one_at_a_time=session.pad_sensitive,
    )


def checkpoint_predictor(
    folder: Path, *, weights: str | Path | None = None, labels: tuple[str, ...] | None = None
) -> Predictor:
    from ..sources import resolve_source

    with tempfile.TemporaryDirectory(prefix="edgekiln-eval-") as work_dir:
        source = resolve_source(str(folder), work_dir=Path(work_dir), weights=weights, labels=labels)
        _check_task(folder, source.task)
        encoder = (
            make_encoder(source.tokenizer_file, source.tokenizer)
            if source.image is None
            else image_encoder(source.image)
        )
    module = source.torch.build()
    return Predictor(
        f"checkpoint {folder.name}",
        source.task,
        _labels(source.labels, folder),
        encoder,
        torch_logits(module, source.torch.input_names),
    )


def make_encoder(tokenizer_file: Path, spec: TokenizerSpec, max_length: int | None = None) -> TextEncoder:
    if max_length is not None:
        spec = spec.model_copy(update={"max_length": min(max_length, spec.max_length)})
    inputs = [TensorSpec(name=name, dtype="int64", shape=("batch", "sequence")) for name in spec.feeds]
    return TextEncoder(tokenizer_file.parent, spec.model_copy(update={"file": tokenizer_file.name}), inputs)


def image_encoder(spec: ImagePreprocessSpec) -> ImagePreprocessor:
    height, width = spec.output_size()
    shape = ("batch", 3, height, width) if spec.layout is Layout.NCHW else ("batch", height, width, 3)
    return ImagePreprocessor(spec, [TensorSpec(name=spec.input, dtype="float32", shape=shape)])


def torch_logits(module, input_names: tuple[str, ...]) -> Logits:
    import torch

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return module(*(torch.from_numpy(feeds[name]) for name in input_names)).float().numpy()

    return run


def _check_task(path: Path, task: Task) -> None:
    if task not in (Task.TEXT_CLASSIFICATION, Task.TOKEN_CLASSIFICATION, Task.IMAGE_CLASSIFICATION):
        raise CompileError(f"{path} is a {task.value} model; evaluation covers text, token and image classification")


def _labels(labels: tuple[str, ...] | None, path: Path) -> tuple[str, ...]:
    if not labels:
        timm = is_timm(str(path)) or is_timm_folder(path)
        hint = "pass --labels FILE (its class names, one a line)" if timm else "fine-tune it with edgekiln finetune"
        raise CompileError(f"{path} records no label names (id2label)", hint=hint)
    return labels
