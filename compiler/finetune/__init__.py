"""`finetune`: a Hugging Face text encoder or image classifier, or a timm classifier, + labelled data
-> a fine-tuned checkpoint `edgekiln compile` takes (a timm model's is a timm folder)."""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from edgekiln.runtime.cpus import available_cpus

from ..data import DataError, Dataset, ImageExample, load_dataset, split_off
from ..errors import CompileError
from ..evaluate.predict import lacking_tags
from ..folders import check_parent, move_into_place, output_lock
from ..tasks import compiler_task
from ..tool_versions import tool_versions
from .config import AugmentSettings, FinetuneConfig, LoraSettings
from .inputs import check_data_files, head_note
from .model import parameter_counts, with_lora
from .state import BEST_DIR, open_run, partial_dir
from .trainer import Log, Plan, stderr_log, train
from .tunable import check_model_path, open_tunable

REPORT_FILE = "train_report.json"


@dataclass(frozen=True)
class FinetuneResult:
    path: Path
    report: dict


def finetune(
    model: str | os.PathLike,
    output: str | os.PathLike,
    *,
    train_data: str | Dataset,
    config: FinetuneConfig,
    eval_data: str | Dataset | None = None,
    weights: str | os.PathLike | None = None,
    force: bool = False,
    log: Log = stderr_log,
    show_progress: bool | None = None,
) -> FinetuneResult:
    """Fine-tune `model` (a Hugging Face folder, a timm folder, or timm:NAME with its `weights` file)."""
    out_dir = Path(output).expanduser().resolve()
    with output_lock(out_dir):  # a second fine-tune to the same -o fails at once (its .partial is ours)
        return _finetune(out_dir, model, train_data, config, eval_data, weights, force, log, show_progress)


def _finetune(out_dir, model, train_data, config, eval_data, weights, force, log, show_progress) -> FinetuneResult:
    import torch

    _check_output(out_dir, force)
    check_model_path(model, weights)
    train_set, dev_set = _datasets(train_data, eval_data, config)
    tunable = open_tunable(model, weights, config)
    labels = _check_labels(train_set, dev_set)
    check_data_files(config.task, train_set, dev_set)
    torch.set_num_threads(config.threads or available_cpus())
    torch.manual_seed(config.seed)
    work = partial_dir(out_dir)
    identity = {
        "model": tunable.identity,
        "config": config.model_dump(mode="json", exclude={"threads"}),  # threads do not change the run
        "train": [train_set.content_fingerprint(), len(train_set)],
        "eval": [dev_set.content_fingerprint(), len(dev_set)],
    }
    resume = open_run(work, identity, force=force, log=log)
    note = head_note(tunable.labels, labels)
    if note and not resume:
        log(note)
    network = tunable.network(labels, note is not None)
    if config.lora is not None:
        network = with_lora(network, config.task, config.lora)
    plan = Plan(config, train_set, dev_set, labels, tunable.encoder, tunable.folder, work)
    log(
        f"fine-tuning {tunable.name} ({'LoRA' if config.lora else 'full'}, "
        f"{parameter_counts(network)['trainable']:,} trainable parameters) on {len(train_set)} examples, "
        f"evaluating {plan.metric} on {len(dev_set)}"
    )
    started = time.perf_counter()
    progress = train(plan, network, resume=resume, log=log, show_bar=show_progress)
    report = {
        "model": str(model),
        "method": "lora" if config.lora else "full",
        "task": config.task.value,
        "config": config.model_dump(mode="json"),
        "labels": list(labels),
        "train_data": {"source": train_set.source, "examples": len(train_set)},
        "eval_data": {"source": dev_set.source, "examples": len(dev_set)},
        "metric": plan.metric,
        "best_epoch": progress.best_epoch,
        "best_metric": progress.best_metric,
        "epochs": progress.history,
        "parameters": parameter_counts(network),
        "train_seconds": round(progress.seconds, 1),
        "wall_seconds_this_session": round(time.perf_counter() - started, 1),
        "resumed": resume,
        "tool_versions": tool_versions(),
    }
    (work / BEST_DIR / REPORT_FILE).write_text(json.dumps(report, indent=2))
    _publish(work, out_dir, force)
    log(f"best dev {plan.metric} {progress.best_metric:.4f} at epoch {progress.best_epoch}; saved to {out_dir}")
    return FinetuneResult(out_dir, report)


def _check_labels(train_set: Dataset, dev_set: Dataset) -> tuple[str, ...]:
    unlabelled = next(
        (e for e in train_set.examples + dev_set.examples if isinstance(e, ImageExample) and not e.label), None
    )
    if unlabelled is not None:
        raise DataError(
            f"{train_set.source} has unlabelled images (e.g. {unlabelled.path}); fine-tuning needs classes",
            hint="lay the images out as FOLDER/CLASS/IMAGE, or give a CSV/TSV with path and label columns",
        )
    labels = train_set.labels
    unknown = sorted(set(dev_set.labels) - set(labels))
    lacking = lacking_tags(dev_set, labels)  # entity tags of known types training never shows: missed entities
    unknown = [tag for tag in unknown if tag not in lacking]
    if unknown:
        raise DataError(f"{dev_set.source} has labels {unknown} that {train_set.source} never uses")
    if len(labels) < 2:
        raise DataError(
            f"{train_set.source} has a single label {list(labels)}; classification needs two or more",
            hint="give data with at least two classes (for images: two or more class sub-folders)",
        )
    return labels


def _datasets(train_data, eval_data, config: FinetuneConfig) -> tuple[Dataset, Dataset]:
    train_set = train_data if isinstance(train_data, Dataset) else load_dataset(train_data, task=config.task)
    if train_set.task is not config.task:
        raise DataError(f"{train_set.source} is {train_set.task.value} data, but the task is {config.task.value}")
    if config.augment is not None and compiler_task(config.task).text_input:
        raise CompileError("augmentation applies to image data", hint=f"the data {train_set.source} is text")
    if eval_data is None:
        train_set, dev_set = split_off(train_set, config.validation_fraction, config.seed)
    else:
        dev_set = eval_data if isinstance(eval_data, Dataset) else load_dataset(eval_data, task=config.task)
    if config.max_train_examples is not None and config.max_train_examples < len(train_set):
        import numpy as np

        keep = np.sort(np.random.default_rng(config.seed).permutation(len(train_set))[: config.max_train_examples])
        train_set = train_set.subset(keep.tolist(), f"{train_set.source} ({config.max_train_examples} sampled)")
    return train_set, dev_set


def _check_output(out_dir: Path, force: bool) -> None:
    check_parent(out_dir)
    if not out_dir.exists():
        return
    if not force:
        raise CompileError(f"output folder {out_dir} already exists", hint="pass --force to replace it")
    if not (out_dir / REPORT_FILE).is_file():
        raise CompileError(
            f"{out_dir} exists and is not an edgekiln fine-tuning output; refusing to replace it",
            hint="choose another -o folder",
        )


def _replaceable(folder: Path) -> str | None:
    return None if (folder / REPORT_FILE).is_file() else "is not an edgekiln fine-tuning output"


def _publish(work: Path, out_dir: Path, force: bool) -> None:
    """Only with --force, and only a folder that is (still) a fine-tuning output, is replaced."""
    move_into_place(work / BEST_DIR, out_dir, replaceable=_replaceable if force else None)
    shutil.rmtree(work)


__all__ = ["AugmentSettings", "FinetuneConfig", "FinetuneResult", "LoraSettings", "finetune"]
