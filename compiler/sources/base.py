"""What the compiler knows about the model it was given, whatever form it came in."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np

from edgekiln.runtime.images.spec import ImagePreprocessSpec
from edgekiln.runtime.manifest import Task, TokenizerSpec
from edgekiln.runtime.tasks.base import distinct_labels

TIMM_PREFIX = "timm:"  # a timm architecture by name, with its weights file (sources/timm_model.py)
TIMM_CONFIG = "config.json"  # a timm checkpoint folder's, naming its architecture (sources/timm_folder.py)


def is_timm(model: Any) -> bool:
    return isinstance(model, str) and model.startswith(TIMM_PREFIX)


def is_timm_folder(model: Any) -> bool:
    """A folder whose config.json names a timm `architecture` (a transformers config has `model_type`)."""
    if not isinstance(model, (str, Path)) or is_timm(model):
        return False
    try:
        config = json.loads((Path(model).expanduser() / TIMM_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "architecture" in config and "model_type" not in config


FeedMaker = Callable[[int, int, np.random.Generator], dict[str, np.ndarray]]


class SourceKind(str, Enum):
    HF_FOLDER = "hf-folder"
    TORCH_MODULE = "torch-module"
    ONNX_FILE = "onnx-file"


@dataclass(frozen=True)
class TorchSpec:
    """How to trace a torch model: the wrapper to export and its inputs."""

    build: Callable[[], Any]  # () -> torch.nn.Module in eval mode, returning the task's output tensor
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    dynamic_axes: dict[str, dict[int, str]]  # input name -> {axis: axis name}
    example: Callable[[], tuple]  # () -> tuple of torch tensors in input order


@dataclass(frozen=True)
class ModelSource:
    kind: SourceKind
    description: str
    content_hash: str
    task: Task
    labels: tuple[str, ...] | None
    make_feeds: FeedMaker  # (batch, sequence, rng) -> named numpy inputs
    torch: TorchSpec | None = None  # None for an ONNX file
    onnx_path: Path | None = None  # set for an ONNX file
    tokenizer_file: Path | None = None
    tokenizer: TokenizerSpec | None = None
    image: ImagePreprocessSpec | None = None  # image tasks: how an image becomes the input tensor
    notes: tuple[str, ...] = ()
    shape_plan: Any = None  # input_shapes.ShapePlan of a raw-tensor (ONNX file) model

    def __post_init__(self) -> None:
        if self.labels is not None and self.task in (Task.TEXT_CLASSIFICATION, Task.IMAGE_CLASSIFICATION):
            object.__setattr__(self, "labels", distinct_labels(tuple(self.labels)))  # a classifier's scores' keys
