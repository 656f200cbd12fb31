"""Pruning as the compiler's first stage: the user's model in, a smaller model of the same kind
out (a Hugging Face folder, or a torch module), with the report and the manifest's pass record."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekiln.runtime.hashing import sha256_json
from edgekiln.runtime.manifest import PassRecord

from ..cache import PassCache
from ..data import Dataset, load_dataset
from ..errors import CompileError
from ..sources.base import is_timm, is_timm_folder
from ..sources.hf import folder_hashes
from .config import PruneConfig, RecoveryConfig
from .evaluation import task_of
from .stage import PruneJob, prune_folder


def prune_model(
    model: Any,
    example_inputs: Any,
    config: PruneConfig,
    recovery: RecoveryConfig | None,
    *,
    data: dict[str, str | Dataset | None],
    store: PassCache,
    say: Callable[[str], None],
    source_recipe: Any = None,
) -> tuple[Any, dict, PassRecord]:
    """(the pruned folder, module, or image classifier's ModelSource; the report; the manifest record)."""
    started = time.perf_counter()
    if config.channels is not None:
        return _prune_module(model, example_inputs, config, started)
    from .image_entry import is_image_classifier, prune_image_classifier

    if is_timm(model) or is_timm_folder(model) or is_image_classifier(model, source_recipe):
        return prune_image_classifier(model, source_recipe, config, recovery, data=data, store=store, say=say)
    if not config.transformer:
        raise CompileError("no pruning amount given", hint="pass --prune-heads, --prune-ffn or --prune-flops")
    folder = Path(str(model)).expanduser() if isinstance(model, (str, Path)) else None
    if folder is None and hasattr(model, "state_dict"):
        raise CompileError(
            f"pruning a torch module to a FLOPs target prunes an image classifier; {type(model).__name__} "
            "declares no image preprocessing",
            hint="pass recipe source.image (an ImagePreprocessSpec), or prune.channels for a raw-tensor CNN",
        )
    if folder is None or not (folder / "config.json").is_file():
        raise CompileError(
            f"head/FFN pruning takes a fine-tuned Hugging Face folder; found {type(model).__name__}",
            hint="pass the checkpoint folder (edgekiln finetune writes one)",
        )
    task, _ = task_of(folder)
    loaded = {name: _dataset(value, task, unlabelled=name == "calibration") for name, value in data.items()}
    job = PruneJob(config, recovery, loaded.get("train"), loaded.get("dev"), loaded.get("calibration"))
    pruned, report, cached = prune_folder(folder, job, store, say)
    record = PassRecord(
        name="prune",
        config=config.model_dump(mode="json"),
        input_sha256=sha256_json(folder_hashes(folder)),
        output_sha256=sha256_json(folder_hashes(pruned)),
        seconds=round(time.perf_counter() - started, 3),
        cached=cached,
    )
    return pruned, report, record


def _prune_module(model, example_inputs, config: PruneConfig, started: float):
    import torch

    from .cnn import prune_channels

    if not isinstance(model, torch.nn.Module) or example_inputs is None:
        raise CompileError("--prune-channels prunes a torch.nn.Module CNN given with example_inputs")
    pruned, report = prune_channels(model, example_inputs, config)
    record = PassRecord(
        name="prune",
        config=config.model_dump(mode="json"),
        input_sha256="module",
        output_sha256="module",
        seconds=round(time.perf_counter() - started, 3),
        cached=False,
    )
    return pruned, report, record


def _dataset(value, task, *, unlabelled: bool) -> Dataset | None:
    if value is None or isinstance(value, Dataset):
        return value
    if unlabelled:  # any dataset, or a .txt of text lines
        from ..quantization.calibration import read_calibration_examples

        return read_calibration_examples(str(value))
    return load_dataset(value, task=task)
