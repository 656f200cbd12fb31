"""What fine-tuning starts from, whatever its kind: a Hugging Face folder (text encoder or image
classifier) or a timm classifier (`timm:NAME` with its weights file, or a timm folder)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data import DataTask
from ..errors import CompileError
from ..sources.base import is_timm, is_timm_folder
from ..sources.hf import folder_hashes
from .config import FinetuneConfig
from .inputs import check_model_fits, folder_labels, model_encoder
from .model import load_for_task


@dataclass(frozen=True)
class Tunable:
    name: str  # as the log and the report name it
    identity: dict  # what it was loaded from, hashed (an interrupted run resumes only from the same)
    labels: tuple[str, ...] | None  # its head's class names, where known
    encoder: Any  # the runtime's preprocessing of its inputs (TextEncoder or ImagePreprocessor)
    network: Callable[[tuple[str, ...], bool], Any]  # (the data's labels, fresh head) -> the model to train
    folder: Path | None  # a Hugging Face folder: where the tokenizer or image processor is copied from


def check_model_path(model: str | os.PathLike, weights: str | os.PathLike | None) -> None:
    """Before any data is read: a Hugging Face folder, a timm folder, or timm:NAME (which alone takes weights)."""
    if weights is not None or is_timm(str(model)) or is_timm_folder(model):
        from ..sources.timm_folder import check_timm_request

        check_timm_request(str(model) if is_timm(str(model)) else model, weights)
        return
    if not (Path(model).expanduser() / "config.json").is_file():
        raise CompileError(
            f"{model} is not a Hugging Face model folder (no config.json)",
            hint="pass a Hugging Face folder, a timm folder, or timm:NAME with --weights FILE",
        )


def open_tunable(model: str | os.PathLike, weights: str | os.PathLike | None, config: FinetuneConfig) -> Tunable:
    if is_timm(str(model)) or is_timm_folder(model):
        return _timm(str(model), weights, config)
    folder = Path(model).expanduser()
    check_model_fits(folder, config.task)
    return Tunable(
        name=folder.name,
        identity=folder_hashes(folder),
        labels=folder_labels(folder),
        encoder=model_encoder(folder, config),
        network=lambda labels, fresh: load_for_task(folder, config.task, labels, fresh_head=fresh),
        folder=folder,
    )


def _timm(model: str, weights, config: FinetuneConfig) -> Tunable:
    from ..evaluate.predictors import image_encoder
    from ..sources.timm_folder import open_timm
    from ..sources.timm_model import timm_source

    if config.task is not DataTask.IMAGE_CLASSIFICATION:
        raise CompileError(
            f"{model} is an image classifier, but the data is {config.task.value} data",
            hint="fine-tune it on images (a folder of class folders, or a CSV of path,label)",
        )
    loaded = open_timm(model, weights)
    source = timm_source(loaded.timm, loaded.module, loaded.name, loaded.weights, None, description=loaded.description)

    def network(labels: tuple[str, ...], fresh: bool):
        from .timm_classifier import timm_network

        return timm_network(loaded.module, labels, fresh_head=fresh)

    return Tunable(
        name=loaded.description,
        identity={"timm": source.content_hash} if is_timm(model) else folder_hashes(Path(model).expanduser()),
        labels=source.labels,
        encoder=image_encoder(source.image),
        network=network,
        folder=None,
    )
