"""What a model folder takes as input, checked against the task of the data before any training:
the tokenizer (text tasks) or the image preprocessing (image tasks), and the head's labels."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from ..data import DataTask
from ..errors import CompileError
from ..sources.remote_code import NO_REMOTE_CODE, refuse_remote_code
from ..tasks import auto_model_class, compiler_task
from .config import FinetuneConfig

KINDS = "image models (ViT, DeiT, ConvNeXt, ResNet, MobileNetV2, ...) on image data, text encoders on text data"


def check_model_fits(folder: Path, task: DataTask) -> None:
    """One error line when the folder's architecture has no head for `task` (a text encoder given
    image data, an image model given text)."""
    import transformers

    refuse_remote_code(folder)
    try:
        config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True, **NO_REMOTE_CODE)
    except Exception as exc:  # unknown model_type, malformed config.json
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CompileError(f"cannot read {folder / 'config.json'}: {first}") from None
    if type(config) not in auto_model_class(task)._model_mapping:
        raise CompileError(
            f"{folder} is a {config.model_type} model, which has no {task.value} head, but the data is "
            f"{task.value} data",
            hint=f"fine-tune {KINDS}",
        )


def model_encoder(folder: Path, config: FinetuneConfig):
    """The runtime's preprocessor for this folder: a TextEncoder, or the ImagePreprocessor that a
    compiled artifact of it will run (from its preprocessor_config.json)."""
    from ..evaluate.predictors import image_encoder, make_encoder

    if not compiler_task(config.task).text_input:
        from ..sources.hf_image import image_spec

        return image_encoder(image_spec(folder))
    from ..sources.hf import export_tokenizer

    with tempfile.TemporaryDirectory(prefix="edgekiln-tok-") as scratch:
        tokenizer_file, spec = export_tokenizer(folder, Path(scratch))
        return make_encoder(tokenizer_file, spec, config.max_length)


def folder_labels(folder: Path) -> tuple[str, ...] | None:
    """The folder's id2label in id order, or None when its config names none."""
    try:
        id2label = json.loads((folder / "config.json").read_text()).get("id2label")
        return tuple(id2label[key] for key in sorted(id2label, key=int)) if id2label else None
    except (OSError, ValueError, TypeError, KeyError):
        return None


def head_note(current: tuple[str, ...] | None, labels: tuple[str, ...]) -> str | None:
    """Why the head is new, when the data's classes are not the model's labels `current` (None: they are)."""
    if current == labels:
        return None
    shown = ", ".join(labels[:6]) + (", ..." if len(labels) > 6 else "")
    before = f"{len(current)} labels" if current else "no labels"
    return (
        f"the data's {len(labels)} classes ({shown}) are not the model's ({before}): "
        "its classification head starts from fresh random weights"
    )


def check_data_files(task: DataTask, *datasets) -> None:
    """Image data: every file's header read before training starts (text was read when loaded)."""
    if not compiler_task(task).text_input:
        from .image_batches import check_image_files

        check_image_files(*datasets)
