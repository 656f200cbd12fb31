"""Recovery fine-tune after pruning: the pruned model (student) learns from the unpruned one
(teacher) through KL on temperature-softened logits, plus the task loss on the labels."""

from __future__ import annotations

from pathlib import Path

from ..data import Dataset
from ..finetune.config import FinetuneConfig, LoraSettings
from ..finetune.trainer import Log, Plan, train
from .config import RecoveryConfig


def distillation_loss(teacher, temperature: float, alpha: float):
    import torch

    def loss(model, inputs: dict, labels):
        logits = model(**inputs).logits
        with torch.no_grad():
            target = teacher(**inputs).logits
        return distilled(logits, target, labels, temperature, alpha)

    return loss


def distilled(logits, target, labels, temperature: float, alpha: float):
    """alpha * T^2 * KL(teacher || student) on logits softened by T, plus (1 - alpha) * cross-entropy
    on `labels` (-100: no label; None: pure distillation)."""
    import torch.nn.functional as F

    valid = labels != -100 if logits.dim() == 3 and labels is not None else None  # token tasks
    student_log = F.log_softmax(logits / temperature, dim=-1)
    teacher_prob = F.softmax(target / temperature, dim=-1)
    kl = (teacher_prob * (teacher_prob.clamp_min(1e-12).log() - student_log)).sum(dim=-1)
    kl = kl[valid].mean() if valid is not None else kl.mean()
    if labels is None or alpha == 1:
        return kl * temperature**2
    task = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    return alpha * kl * temperature**2 + (1 - alpha) * task


def recover(
    student,
    teacher,
    *,
    train_set: Dataset,
    dev_set: Dataset,
    labels: tuple[str, ...],
    encoder,
    model_folder: Path,
    work: Path,
    config: RecoveryConfig,
    log: Log,
):
    """Train `student` in place; returns the trainer's progress (history, best metric)."""
    import numpy as np

    if config.max_train_examples is not None and config.max_train_examples < len(train_set):
        keep = np.sort(np.random.default_rng(0).permutation(len(train_set))[: config.max_train_examples])
        train_set = train_set.subset(keep.tolist(), f"{train_set.source} ({config.max_train_examples} sampled)")
    settings = FinetuneConfig(
        task=train_set.task,
        epochs=config.epochs,
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        lora=LoraSettings() if config.lora else None,
        threads=config.threads,
        save_every=10**9,
    )
    if config.lora:
        from ..finetune.model import with_lora

        student = with_lora(student, train_set.task, settings.lora)
    teacher.eval()
    plan = Plan(
        settings,
        train_set,
        dev_set,
        labels,
        encoder,
        model_folder,
        work,
        loss=distillation_loss(teacher, config.temperature, config.alpha),
    )
    return train(plan, student, resume=False, log=log, show_bar=None, keep_start=True)
