"""Evaluating an image classifier: top-1 (with per-class precision and recall) and top-5 accuracy (for
models with more than five classes: with five or fewer it is 1.0 by construction, so it is left out)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...runtime.errors import InputError
from ..data import DataError, Dataset
from .metrics import classification_metrics
from .predict import label_mapping
from .predictors import Predictor

TOP_K = 5


def evaluate_images(
    predictor: Predictor, dataset: Dataset, *, batch_size: int = 32, skip_bad: bool = False
) -> tuple[dict, list[str]]:
    """(metrics, top-1 predictions in the dataset's label names). With `skip_bad`, images that cannot be
    decoded are left out and listed in the metrics (`skipped_images`); else the first is one error."""
    unlabelled = [e.path for e in dataset.examples if not e.label]
    if unlabelled:
        raise DataError(
            f"{dataset.source} has unlabelled images (e.g. {unlabelled[0]}); evaluation needs labels",
            hint="lay the images out as FOLDER/CLASS/IMAGE, or give a CSV/TSV with path and label",
        )
    mapping = label_mapping(dataset, predictor)
    back = {model: data for data, model in mapping.items()}
    index = {label: i for i, label in enumerate(predictor.labels)}
    kept, skipped, top1, in_top = [], [], [], []
    for start in range(0, len(dataset), batch_size):
        examples, feeds = _encoded(predictor, dataset.examples[start : start + batch_size], skip_bad, skipped)
        if not examples:
            continue
        logits = np.asarray(predictor.logits(feeds)).reshape(len(examples), -1)
        best = np.argsort(-logits, axis=1, kind="stable")[:, :TOP_K]
        for row, example in zip(best, examples):
            top1.append(back.get(predictor.labels[row[0]], predictor.labels[row[0]]))
            in_top.append(index[mapping[example.label]] in row)
        kept += examples
    if not kept:
        raise DataError(
            f"no image of {dataset.source} could be read (e.g. {skipped[0]['path']}: {skipped[0]['error']})"
        )
    labels = dataset.labels if not skipped else replace(dataset, examples=tuple(kept)).labels  # classes scored
    metrics = classification_metrics([e.label for e in kept], top1, labels)
    if len(predictor.labels) > TOP_K:
        metrics["top5_accuracy"] = float(np.mean(in_top))
    if skip_bad:
        metrics["skipped_images"] = skipped
    return metrics, top1


def _encoded(predictor: Predictor, examples, skip_bad: bool, skipped: list[dict]) -> tuple[list, dict | None]:
    """(the examples that decode, their feeds); with `skip_bad` the others are added to `skipped`."""
    try:
        return list(examples), predictor.encoder.encode([e.path for e in examples])[0]
    except InputError as exc:
        if not skip_bad:
            raise InputError(exc.message, hint=f"{exc.hint + '; or ' if exc.hint else ''}{SKIP_HINT}") from None
    good = []
    for example in examples:  # one at a time, to name each bad one
        try:
            predictor.encoder.encode([example.path])
            good.append(example)
        except InputError as exc:
            skipped.append({"path": example.path, "error": exc.message})
    return good, (predictor.encoder.encode([e.path for e in good])[0] if good else None)


SKIP_HINT = "pass --skip-bad-images to leave unreadable images out of the evaluation"


def without(dataset: Dataset, skipped: list[dict]) -> Dataset:
    """`dataset` less the images another evaluation skipped (so that both score the same images)."""
    paths = {row["path"] for row in skipped}
    return replace(dataset, examples=tuple(e for e in dataset.examples if e.path not in paths))
