"""A timm checkpoint folder: timm's own format on disk, a config.json naming the `architecture` with its
`pretrained_cfg` (preprocessing, label names) beside `model.safetensors` or `pytorch_model.bin`. It is
what `huggingface-cli download timm/NAME` fetches, what `timm.models.save_for_hf` writes, and what
`edgekiln finetune` writes for a timm model; it compiles, evaluates and prunes like `timm:NAME
--weights FILE`, with the folder's own preprocessing and labels. Both kinds of timm model are opened
here (`open_timm`, `from_timm`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgekiln.runtime.hashing import sha256_file
from edgekiln.runtime.images.spec import ImagePreprocessSpec
from edgekiln.runtime.manifest import Task

from ..errors import CompileError
from .base import TIMM_CONFIG as CONFIG
from .base import TIMM_PREFIX, ModelSource, is_timm, is_timm_folder
from .timm_model import (
    build_named,
    check_named,
    check_task_and_image,
    first_line,
    import_timm,
    load_weights,
    read_state_dict,
    timm_source,
)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class TimmModel:
    """A loaded timm classifier (eval mode) and where it came from."""

    timm: Any  # the timm package
    module: Any
    name: str  # the architecture, with its tag for timm:NAME.TAG
    weights: Path
    description: str  # timm:NAME, or the folder


def check_timm_request(model: Any, weights: str | Path | None) -> None:
    """One line, before anything loads: `--weights` for a model that is not timm:NAME, timm:NAME without
    its weights (or without a name), or weights beside a timm folder, which holds its own."""
    if is_timm(model):
        check_named(model, model[len(TIMM_PREFIX) :].strip(), weights)
    elif weights is not None and is_timm_folder(model):
        raise CompileError(f"{model} is a timm folder and holds its own weights", hint="drop --weights")
    elif weights is not None:
        raise CompileError(
            "--weights gives the weights of a timm model", hint="use it with timm:NAME, e.g. timm:resnet18"
        )


def from_timm(
    model: Any,
    weights: str | Path | None,
    *,
    labels: tuple[str, ...] | None,
    task: Task | None,
    image: ImagePreprocessSpec | None,
) -> ModelSource:
    """The ModelSource of `timm:NAME` with its weights file, or of a timm folder (`labels` replace the
    names its pretrained_cfg gives)."""
    check_timm_request(model, weights)
    check_task_and_image(task, image)
    loaded = open_timm(model, weights)
    # a folder's model_args and pretrained_cfg are what its module and inputs are: hashed too
    config = None if is_timm(model) else sha256_file(Path(model).expanduser() / CONFIG)
    return timm_source(
        loaded.timm, loaded.module, loaded.name, loaded.weights, labels, description=loaded.description, config=config
    )


def load_timm_folder(folder: Path) -> TimmModel:
    folder = Path(folder).expanduser()
    timm = import_timm()
    weights = next((folder / file for file in WEIGHT_FILES if (folder / file).is_file()), None)
    if weights is None:
        raise CompileError(
            f"timm folder {folder} holds no weights (looked for {' and '.join(WEIGHT_FILES)})",
            hint="copy the whole folder, weights included",
        )
    config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    name = str(config["architecture"])
    if not timm.is_model(name):
        raise CompileError(
            f"{folder / CONFIG} names architecture {name!r}, which timm {timm.__version__} does not have",
            hint="install the timm version the folder was saved with",
        )
    state = read_state_dict(weights)
    classes = config.get("num_classes")
    extra = {"num_classes": int(classes)} if isinstance(classes, int) else {}
    try:
        module = timm.create_model(f"local-dir:{folder}", pretrained=False, **extra)
    except Exception as exc:  # a malformed pretrained_cfg or model_args: KeyError, TypeError, ValueError
        raise CompileError(f"timm cannot build the model of {folder / CONFIG}: {first_line(exc)}") from None
    return TimmModel(timm, load_weights(module, state, name, weights), name, weights, str(folder))


def open_timm(model: Any, weights: str | Path | None = None) -> TimmModel:
    """`timm:NAME` with its weights file, or a timm folder."""
    check_timm_request(model, weights)
    if is_timm(model):
        name = model[len(TIMM_PREFIX) :].strip()
        module, path, timm = build_named(name, weights)
        return TimmModel(timm, module, name, path, f"{TIMM_PREFIX}{name}")
    return load_timm_folder(Path(model))
