"""Evaluating an image classifier: top-1 (with per-class precision and recall) and top-5 accuracy (for
models with more than five classes: with five or fewer it is 1.0 by construction, so it is left out)."""

from __future__ import annotations

import numpy as np

from ..data import DataError, Dataset
from .metrics import classification_metrics
from .predict import label_mapping
from .predictors import Predictor

TOP_K = 5


def evaluate_images(predictor: Predictor, dataset: Dataset, *, batch_size: int = 32) -> tuple[dict, list[str]]:
    """(metrics, top-1 predictions in the dataset's label names)."""
    unlabelled = [e.path for e in dataset.examples if not e.label]
    if unlabelled:
        raise DataError(
            f"{dataset.source} has unlabelled images (e.g. {unlabelled[0]}); evaluation needs labels",
            hint="lay the images out as FOLDER/CLASS/IMAGE, or give a CSV/TSV with path and label",
        )
    mapping = label_mapping(dataset, predictor)
    back = {model: data for data, model in mapping.items()}
    index = {label: i for i, label in enumerate(predictor.labels)}
    gold = [index[mapping[e.label]] for e in dataset.examples]
    top1, in_top = [], []
    for start in range(0, len(dataset), batch_size):
        examples = dataset.examples[start : start + batch_size]
        feeds, _ = predictor.encoder.encode([e.path for e in examples])
        logits = np.asarray(predictor.logits(feeds)).reshape(len(examples), -1)
        best = np.argsort(-logits, axis=1, kind="stable")[:, :TOP_K]
        for row, answer in zip(best, gold[start : start + batch_size]):
            top1.append(back.get(predictor.labels[row[0]], predictor.labels[row[0]]))
            in_top.append(answer in row)
    metrics = classification_metrics([e.label for e in dataset.examples], top1, dataset.labels)
    if len(predictor.labels) > TOP_K:
        metrics["top5_accuracy"] = float(np.mean(in_top))
    return metrics, top1
