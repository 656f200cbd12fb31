"""Loading a checkpoint with a fresh task head, wrapping it in LoRA, saving it merged."""

from __future__ import annotations

import contextlib
import copy
from pathlib import Path

from ..data import DataTask
from ..errors import CompileError
from ..pruning.loading import load_pretrained, save_pretrained
from ..tasks import auto_model_class, compiler_task
from .config import LoraSettings


@contextlib.contextmanager
def quiet_transformers():
    """Loading a bare encoder into a classifier warns about the new head by design; edgekiln says so itself."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_for_task(folder: Path, task: DataTask, labels: tuple[str, ...]):

    auto = auto_model_class(task)
    try:
        with quiet_transformers():
            return load_pretrained(
                auto,
                folder,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)},
                ignore_mismatched_sizes=True,
            )
    except Exception as exc:  # unknown architecture, corrupt weights, missing files
        raise CompileError(
            f"cannot load {folder} for {task.value}: {exc}", hint="pass a Hugging Face encoder folder (BERT family)"
        ) from None


def with_lora(model, task: DataTask, settings: LoraSettings):
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(
        task_type=getattr(TaskType, compiler_task(task).peft_task_type),
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules="all-linear",
    )
    return get_peft_model(model, config)


def save_checkpoint(model, tokenizer_source: Path, folder: Path) -> None:
    """A plain Hugging Face checkpoint: LoRA adapters merged into the weights, tokenizer beside it."""
    import transformers

    plain = copy.deepcopy(model).merge_and_unload() if hasattr(model, "merge_and_unload") else model
    with quiet_transformers():
        save_pretrained(plain, folder)
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer_source), local_files_only=True)
        tokenizer.save_pretrained(str(folder))


def parameter_counts(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}
