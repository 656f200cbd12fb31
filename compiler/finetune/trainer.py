"""The training loop: AdamW, linear warm-up/decay, gradient clipping, evaluation each epoch,
best checkpoint kept, state saved every few steps so an interrupted run resumes where it stopped."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekiln.runtime.images.preprocess import ImagePreprocessor
from edgekiln.runtime.manifest import Task
from edgekiln.runtime.preprocess import TextEncoder
from edgekiln.runtime.progress import Progress as Bar

from ..data import Dataset
from ..evaluate import evaluate_predictor
from ..evaluate.predictors import Predictor
from ..tasks import compiler_task
from .batches import training_batches
from .config import FinetuneConfig
from .model import save_checkpoint
from .state import BEST_DIR, Progress, load_state, save_state

Log = Callable[[str], None]


@dataclass(frozen=True)
class Plan:
    config: FinetuneConfig
    train: Dataset
    dev: Dataset
    labels: tuple[str, ...]
    encoder: TextEncoder | ImagePreprocessor  # the runtime's preprocessing of this model's inputs
    model_folder: Path | None  # a Hugging Face folder (its tokenizer or processor is saved beside)
    work: Path
    loss: Callable | None = None  # (model, inputs, labels) -> loss; None: the model's own task loss

    @property
    def metric(self) -> str:
        return compiler_task(self.config.task).metric


def train(plan: Plan, model, *, resume: bool, log: Log, show_bar: bool | None, keep_start: bool = False) -> Progress:
    """Train for the plan's epochs, keeping the best epoch's checkpoint; with `keep_start` the model as
    it starts is a candidate too (epoch 0: a recovery that only makes things worse keeps the start)."""
    batches = training_batches(plan.train, plan.encoder, plan.labels, plan.config)
    optimizer, scheduler = _optimizer(plan, model, batches.steps())
    progress = load_state(plan.work, model, optimizer, scheduler) if resume else Progress()
    if resume:
        log(f"resuming from epoch {progress.epoch + 1}, step {progress.step_in_epoch} ({plan.work})")
    elif keep_start:
        _score_start(plan, model, progress, log)
    config = plan.config
    while progress.epoch < config.epochs:
        started = time.perf_counter()
        last = f", dev {plan.metric} {progress.history[-1][plan.metric]:.4f}" if progress.history else ""
        bar = Bar(batches.steps(), f"epoch {progress.epoch + 1}/{config.epochs}{last}", enabled=show_bar)
        bar.done = progress.step_in_epoch
        model.train()
        for feeds, labels in batches.epoch(progress.epoch, progress.step_in_epoch):
            loss = _step(model, optimizer, scheduler, feeds, labels, config.max_grad_norm, plan.loss)
            progress.step_in_epoch += 1
            progress.global_step += 1
            progress.running_loss += loss
            bar.advance(f"loss {progress.running_loss / progress.step_in_epoch:.4f}")
            if progress.global_step % config.save_every == 0:
                progress.seconds += time.perf_counter() - started
                started = time.perf_counter()
                save_state(plan.work, model, optimizer, scheduler, progress)
        bar.close()
        progress.seconds += time.perf_counter() - started
        _end_epoch(plan, model, progress, log)
        save_state(plan.work, model, optimizer, scheduler, progress)
    return progress


def _step(
    model,
    optimizer,
    scheduler,
    feeds: dict[str, np.ndarray],
    labels: np.ndarray,
    max_norm: float,
    loss_fn: Callable | None,
) -> float:
    import torch

    inputs = {name: torch.from_numpy(array) for name, array in feeds.items()}
    target = torch.from_numpy(labels)
    loss = loss_fn(model, inputs, target) if loss_fn else model(**inputs, labels=target).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _score_start(plan: Plan, model, progress: Progress, log: Log) -> None:
    report, _ = evaluate_predictor(training_predictor(plan, model), plan.dev, batch_size=plan.config.eval_batch_size)
    progress.best_metric, progress.best_epoch = report[plan.metric], 0
    _keep_best(plan, model)
    log(f"before training: dev {plan.metric} {progress.best_metric:.4f} (kept unless an epoch beats it)")


def _keep_best(plan: Plan, model) -> None:
    staging = plan.work / (BEST_DIR + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    save_checkpoint(model, plan.model_folder, staging)
    shutil.rmtree(plan.work / BEST_DIR, ignore_errors=True)
    staging.rename(plan.work / BEST_DIR)


def _end_epoch(plan: Plan, model, progress: Progress, log: Log) -> None:
    started = time.perf_counter()
    report, _ = evaluate_predictor(training_predictor(plan, model), plan.dev, batch_size=plan.config.eval_batch_size)
    score = report[plan.metric]
    entry = {
        "epoch": progress.epoch + 1,
        "train_loss": progress.running_loss / max(progress.step_in_epoch, 1),
        plan.metric: score,
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "train_seconds": round(progress.seconds, 1),
        "eval_seconds": round(time.perf_counter() - started, 1),
    }
    progress.history.append(entry)
    improved = progress.best_metric is None or score > progress.best_metric
    if improved:
        progress.best_metric, progress.best_epoch = score, progress.epoch + 1
        _keep_best(plan, model)
    log(
        f"epoch {entry['epoch']}/{plan.config.epochs}: train loss {entry['train_loss']:.4f}, dev {plan.metric} "
        f"{score:.4f}{' (best so far, saved)' if improved else ''}, {progress.seconds:.0f} s training"
    )
    progress.epoch += 1
    progress.step_in_epoch = 0
    progress.running_loss = 0.0


def training_predictor(plan: Plan, model) -> Predictor:
    """The model being trained, seen through the same Predictor interface as artifacts and checkpoints."""
    import torch

    def logits(feeds: dict[str, np.ndarray]) -> np.ndarray:
        model.eval()
        try:
            with torch.inference_mode():
                inputs = {name: torch.from_numpy(array) for name, array in feeds.items()}
                return model(**inputs).logits.float().numpy()
        finally:
            model.train()

    return Predictor("model in training", Task(plan.config.task.value), plan.labels, plan.encoder, logits)


def _optimizer(plan: Plan, model, steps_per_epoch: int):
    import torch
    from transformers import get_linear_schedule_with_warmup

    decay, no_decay = [], []
    exempt = tuple(getattr(model, "no_weight_decay", set)())  # a timm model's (timm_classifier.py); under LoRA too
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            skip = parameter.ndim < 2 or "LayerNorm" in name or name.endswith(exempt)
            (no_decay if skip else decay).append(parameter)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": plan.config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=plan.config.effective_learning_rate,
    )
    total = steps_per_epoch * plan.config.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(total * plan.config.warmup_ratio), total)
    return optimizer, scheduler


def stderr_log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
