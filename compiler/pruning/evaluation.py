"""What pruning needs around the model: its task and labels, a text encoder, calibration batches
for the importance scores, and accuracy in points on the dev data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgekiln.runtime.manifest import Task

from ..data import DataError, Dataset, DataTask
from ..errors import CompileError
from ..tasks import compiler_task

BATCH = 32


def task_of(folder: Path) -> tuple[DataTask, tuple[str, ...]]:
    config = json.loads((folder / "config.json").read_text())
    architecture = " ".join(config.get("architectures") or [])
    id2label = config.get("id2label") or {}
    labels = tuple(id2label[k] for k in sorted(id2label, key=int))
    if "TokenClassification" in architecture:
        return DataTask.TOKEN_CLASSIFICATION, labels
    if "SequenceClassification" in architecture:
        return DataTask.TEXT_CLASSIFICATION, labels
    raise CompileError(
        f"structured pruning works on fine-tuned classifiers; {folder} is {architecture or 'unknown'}",
        hint="fine-tune it first (edgekiln finetune) for sequence or token classification",
    )


def check_labels(datasets, labels: tuple[str, ...]) -> None:
    """Scores and recovery use the model's label ids: labelled data must use the model's label names."""
    for dataset in datasets:
        unknown = sorted(set(dataset.labels) - set(labels)) if dataset is not None else []
        if unknown:
            raise DataError(
                f"labels {unknown} in {dataset.source} are not among the model's labels {list(labels)}",
                hint="prune with the data the model was fine-tuned on",
            )


def encoder_for(folder: Path, work: Path):
    from ..evaluate.predictors import make_encoder
    from ..sources.hf import export_tokenizer

    tokenizer_file, spec = export_tokenizer(folder, work)
    return make_encoder(tokenizer_file, spec, 128)


def importance_batches(job, task: DataTask, labels: tuple[str, ...], encoder):
    from ..finetune.batches import encode_batch

    data = job.train if job.train is not None else job.calibration
    if data is None:
        return []
    order = np.random.default_rng(job.config.seed).permutation(len(data))[: job.config.samples]
    examples = [data.examples[i] for i in order]
    label_ids = {label: i for i, label in enumerate(labels)}
    if job.train is None:  # unlabelled text: labels come from the model's predictions
        return [
            (encoder.encode([getattr(e, "text", None) or " ".join(e.tokens) for e in examples[i : i + BATCH]])[0], None)
            for i in range(0, len(examples), BATCH)
        ]
    return [encode_batch(task, examples[i : i + BATCH], encoder, label_ids) for i in range(0, len(examples), BATCH)]


def accuracy_points(model, dev: Dataset | None, labels: tuple[str, ...], encoder) -> float | None:
    """Accuracy (text) or entity F1 (tokens) in points, or None without dev data."""
    if dev is None:
        return None
    import torch

    from ..evaluate import evaluate_predictor
    from ..evaluate.predictors import Predictor

    def logits(feeds: dict[str, np.ndarray]) -> np.ndarray:
        model.eval()
        with torch.inference_mode():
            return model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.float().numpy()

    task = Task(dev.task.value)
    report, _ = evaluate_predictor(Predictor("pruned model", task, labels, encoder, logits), dev, batch_size=64)
    return 100 * report[compiler_task(dev.task).metric]
