"""Loading a checkpoint with a fresh task head, wrapping it in LoRA, saving it merged."""

from __future__ import annotations

import contextlib
import copy
import shutil
from pathlib import Path

from ..data import DataTask
from ..errors import CompileError
from ..pruning.loading import load_pretrained, save_pretrained
from ..sources.remote_code import NO_REMOTE_CODE
from ..tasks import auto_model_class, compiler_task
from .config import LoraSettings

PROCESSOR_FILE = "preprocessor_config.json"


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


def load_for_task(folder: Path, task: DataTask, labels: tuple[str, ...], *, fresh_head: bool = False):
    """The folder's model with a head for `labels`; `fresh_head` re-initialises the head even where
    its size fits (the data's classes are not the ones it was trained on)."""
    auto = auto_model_class(task)
    try:
        with quiet_transformers():
            model = load_pretrained(
                auto,
                folder,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={label: i for i, label in enumerate(labels)},
                ignore_mismatched_sizes=True,
            )
    except Exception as exc:  # unknown architecture, corrupt weights, missing files
        raise CompileError(
            f"cannot load {folder} for {task.value}: {_first_line(exc)}",
            hint="pass a Hugging Face model folder with weights for this task",
        ) from None
    if fresh_head:
        stored = _stored_tensor_names(folder)
        for name in head_names(model):
            if stored is not None and not any(key.startswith(f"{name}.") for key in stored):
                continue  # not in the checkpoint: transformers already initialised it its own way
            for part in getattr(model, name).modules():
                if hasattr(part, "reset_parameters"):
                    part.reset_parameters()
    return model


def _stored_tensor_names(folder: Path) -> set[str] | None:
    """The tensor names of the folder's safetensors weights (None: weights in another format)."""
    import json

    from safetensors import safe_open

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text())["weight_map"])
    single = folder / "model.safetensors"
    if not single.is_file():
        return None
    with safe_open(str(single), framework="np") as weights:
        return set(weights.keys())


def head_names(model) -> list[str]:
    """The model's top-level modules outside its backbone (the classifier), by Hugging Face's
    `base_model_prefix` convention."""
    prefix = getattr(model, "base_model_prefix", "")
    return [
        name for name, child in model.named_children() if name != prefix and next(child.parameters(), None) is not None
    ]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def with_lora(model, task: DataTask, settings: LoraSettings):
    """LoRA on every linear layer (text encoders, through peft's task type), or for a model peft has
    no task type for (image classifiers) on the backbone's linears and ungrouped convolutions, the
    head trained in full."""
    import torch
    from peft import LoraConfig, TaskType, get_peft_model

    common = {"r": settings.rank, "lora_alpha": settings.alpha, "lora_dropout": settings.dropout}
    kind = compiler_task(task).peft_task_type
    if kind is not None:  # the encoder's linears (the head is trained in full: peft's task type saves it)
        linears = [name for name in lora_targets(model) if isinstance(model.get_submodule(name), torch.nn.Linear)]
        config = LoraConfig(task_type=getattr(TaskType, kind), target_modules=linears or "all-linear", **common)
    else:
        layout = getattr(model, "lora_layout", None)  # a timm classifier (timm_classifier.py) names its own
        targets, heads = layout() if layout else (lora_targets(model), head_names(model))
        if not targets:
            raise CompileError(
                f"{type(model).__name__} has no linear or convolution layers LoRA can adapt",
                hint="fine-tune it in full (without --lora)",
            )
        config = LoraConfig(target_modules=targets, modules_to_save=heads, **common)
    return get_peft_model(model, config)


def lora_targets(model) -> list[str]:
    """Full names of the backbone's Linear and Conv2d layers (depthwise/grouped convolutions are
    left out: a low-rank update of a per-channel filter saves nothing)."""
    import torch

    prefix = getattr(model, "base_model_prefix", "") + "."
    return [
        name
        for name, module in model.named_modules()
        if name.startswith(prefix)
        and (isinstance(module, torch.nn.Linear) or (isinstance(module, torch.nn.Conv2d) and module.groups == 1))
    ]


def save_checkpoint(model, tokenizer_source: Path, folder: Path) -> None:
    """A plain Hugging Face checkpoint: LoRA adapters merged into the weights, and beside it the
    tokenizer, or for an image model the source's preprocessor_config.json."""
    import transformers

    plain = copy.deepcopy(model).merge_and_unload() if hasattr(model, "merge_and_unload") else model
    if hasattr(plain, "save_folder"):  # a timm classifier: a timm folder
        plain.save_folder(folder)
        return
    with quiet_transformers():
        save_pretrained(plain, folder)
        if getattr(plain, "main_input_name", None) == "pixel_values":
            shutil.copyfile(tokenizer_source / PROCESSOR_FILE, folder / PROCESSOR_FILE)
            return
        tokenizer = transformers.AutoTokenizer.from_pretrained(
            str(tokenizer_source), local_files_only=True, **NO_REMOTE_CODE
        )
        tokenizer.save_pretrained(str(folder))


def parameter_counts(model) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"total": total, "trainable": trainable}
