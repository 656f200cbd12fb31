"""Recovery of a pruned image classifier: distillation from the unpruned model (the text recovery's
loss, `recovery.distilled`: KL on temperature-softened logits, plus cross-entropy when the images
are labelled) on the training images, through the runtime's image preprocessing. AdamW with linear
warm-up and decay as the text trainer; the best epoch on the dev images is kept (accuracy when they
are labelled, else agreement with the unpruned model). The text trainer saves Hugging Face folders
between epochs, which a pruned CNN cannot be; the best weights are kept in memory instead."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import numpy as np

from ..data import Dataset
from .cnn_data import ImageData, batches, measure, sample
from .config import RecoveryConfig
from .recovery import distilled

LEARNING_RATE = 1e-3  # images: the pruned convolutions re-learn from a teacher, not a pretrained LM
WARMUP = 0.1
MAX_GRAD_NORM = 1.0
BN_IMAGES = 1024  # images per batch-norm re-estimation


def recover_images(
    student, teacher, data: ImageData, encoder, labels, teacher_top, config: RecoveryConfig, say: Callable
) -> dict:
    """Train `student` in place, keep its best epoch; returns the history."""
    import torch

    train = sample(data.train if data.train is not None else data.calibration, config.max_train_examples, 0)
    if config.threads:
        torch.set_num_threads(config.threads)
    steps = math.ceil(len(train) / config.batch_size) * config.epochs
    optimizer, scheduler = _optimizer(student, config, steps)
    teacher.eval()
    history, best, best_score = [], None, None
    start = measure(student, teacher_top, data, encoder, labels) or {}
    start_score = start.get("accuracy") if start.get("accuracy") is not None else start.get("agreement")
    kept = None
    if start_score is not None:  # the pruned model as it is (epoch 0): kept unless an epoch beats it
        best, best_score, kept = copy.deepcopy(student.state_dict()), start_score, 0
    started = time.perf_counter()
    for epoch in range(config.epochs):
        loss = _epoch(student, teacher, train, encoder, labels, config, (optimizer, scheduler), epoch)
        recalibrate(student, train, encoder, labels)
        scores = measure(student, teacher_top, data, encoder, labels) or {}
        score = scores.get("accuracy") if scores.get("accuracy") is not None else scores.get("agreement")
        history.append({"epoch": epoch + 1, "train_loss": round(loss, 5), **scores})
        improved = best is None or score is None or best_score is None or score > best_score
        if improved:
            best, best_score, kept = copy.deepcopy(student.state_dict()), score, epoch + 1
        say(f"prune: recovery epoch {epoch + 1}/{config.epochs}, loss {loss:.4f}, dev {scores or 'n/a'}")
    student.load_state_dict(best)
    student.eval()
    return {
        "epochs": history,
        "kept_epoch": kept,
        "seconds": round(time.perf_counter() - started, 1),
        "train": train.source,
        "config": config.model_dump(mode="json"),
        "learning_rate": config.learning_rate or LEARNING_RATE,
    }


def _epoch(student, teacher, train: Dataset, encoder, labels, config: RecoveryConfig, optim, epoch: int) -> float:
    import torch

    optimizer, scheduler = optim
    order = np.random.default_rng([0, epoch]).permutation(len(train))
    student.train()
    total, count = 0.0, 0
    for pixels, ids in batches(train, encoder, labels, order, config.batch_size):
        if len(pixels) < 2:  # BatchNorm in training mode needs two images
            continue
        inputs = torch.from_numpy(pixels)
        with torch.no_grad():
            target = teacher(inputs)
        gold = None if ids is None else torch.from_numpy(ids)
        loss = distilled(student(inputs), target, gold, config.temperature, config.alpha)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        total, count = total + float(loss.detach()), count + 1
    student.eval()
    return total / max(count, 1)


def recalibrate(model, train: Dataset, encoder, labels, images: int = BN_IMAGES) -> None:
    """Batch-norm statistics re-estimated for the current weights (a plain average over training images):
    the running averages lag behind weights that moved fast."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    with torch.no_grad():
        for pixels, _ in batches(sample(train, images, 1), encoder, labels):
            model(torch.from_numpy(pixels))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.eval()


def _optimizer(model, config: RecoveryConfig, steps: int):
    import torch

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate or LEARNING_RATE, weight_decay=0.0)
    warmup = max(1, int(steps * WARMUP))

    def factor(step: int) -> float:
        return (step + 1) / warmup if step < warmup else max(0.0, (steps - step) / max(1, steps - warmup))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
