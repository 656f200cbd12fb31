"""Batched predictions over a dataset, through a Predictor."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..data import DataError, Dataset, DataTask
from ..data.conll import is_entity_tag
from .predictors import Predictor

Progress = Callable[[int], None]


def label_mapping(dataset: Dataset, predictor: Predictor) -> dict[str, str]:
    """Dataset label -> model label. Equal names match; so does "i" with a default "LABEL_i"."""
    return map_labels(dataset, predictor.labels, predictor.name)


def map_labels(dataset: Dataset, labels: tuple[str, ...], model: str) -> dict[str, str]:
    """`label_mapping` for a model's `labels` (named `model` in the error): also checked before a build's
    quantization runs, so data labelled otherwise fails before the calibration, not after it."""
    known = set(labels)
    mapping = {}
    for label in dataset.labels:
        if label in known:
            mapping[label] = label
        elif f"LABEL_{label}" in known:
            mapping[label] = f"LABEL_{label}"
    missing = [label for label in dataset.labels if label not in mapping]
    if dataset.task is DataTask.TOKEN_CLASSIFICATION:  # entity tags it lacks: entities it cannot find
        missing = [tag for tag in missing if tag not in lacking_tags(dataset, labels)]
    for label in missing:  # a name several classes share reads "crane (134)", "crane (517)" in the model
        shared = [name for name in labels if name.startswith(f"{label} (") and name.endswith(")")]
        if len(shared) > 1:
            raise DataError(
                f"label {label!r} in {dataset.source} names {len(shared)} of {model}'s classes: {_some(shared)}",
                hint="label the data with one of those names",
            )
    if missing:
        raise DataError(
            f"labels {_some(missing)} in {dataset.source} are not among {model}'s "
            f"{len(labels)} labels {_some(list(labels))}",
            hint="evaluate with data labelled like the model's training data",
        )
    return mapping


def lacking_tags(dataset: Dataset, labels: tuple[str, ...]) -> list[str]:
    """Token data: the entity tags in `dataset` that a model with `labels` never predicts, of entity types
    it knows (I-person where it has B-person: a longer entity than training showed). A type it does not
    know at all (B-person against B-PER) is data labelled otherwise, not lacking tags."""
    if dataset.task is not DataTask.TOKEN_CLASSIFICATION:
        return []
    types = {label[2:] for label in labels if is_entity_tag(label)}
    return [tag for tag in dataset.labels if tag not in labels and is_entity_tag(tag) and tag[2:] in types]


def _some(names: list[str], shown: int = 8) -> str:
    """A list for an error line: the first few names, and how many more (ImageNet has 1000)."""
    if len(names) <= shown:
        return str(names)
    return f"{names[:shown]} and {len(names) - shown} more"


def predict_dataset(
    predictor: Predictor,
    dataset: Dataset,
    *,
    batch_size: int = 32,
    progress: Progress = lambda done: None,
    unseen: list[int] | None = None,
) -> list:
    """Predicted label per example (text), or predicted tag sequence per sentence (tokens). Words past
    the model's longest sequence are predicted O; `unseen`, when given, collects how many there were."""
    if dataset.task.value != predictor.task.value:
        raise DataError(
            f"{dataset.source} is {dataset.task.value} data but {predictor.name} does {predictor.task.value}"
        )
    batch_size = 1 if predictor.one_at_a_time else batch_size
    lengths = [len(e.text) if dataset.task is DataTask.TEXT_CLASSIFICATION else len(e.tokens) for e in dataset.examples]
    order = np.argsort(lengths, kind="stable")  # similar lengths per batch: less padding
    results: list = [None] * len(dataset)
    for start in range(0, len(order), batch_size):
        chunk = [int(i) for i in order[start : start + batch_size]]
        examples = [dataset.examples[i] for i in chunk]
        for index, prediction in zip(chunk, _predict_batch(predictor, dataset.task, examples, unseen)):
            results[index] = prediction
        progress(len(chunk))
    return results


def _predict_batch(predictor: Predictor, task: DataTask, examples: list, unseen: list[int] | None) -> list:
    labels = predictor.labels
    if task is DataTask.TEXT_CLASSIFICATION:
        feeds, _ = predictor.encoder.encode([e.text for e in examples])
        return [labels[i] for i in predictor.logits(feeds).argmax(-1)]
    feeds, encodings = predictor.encoder.encode_words([e.tokens for e in examples])
    best = predictor.logits(feeds).argmax(-1)
    predictions = []
    for row, (example, encoding) in enumerate(zip(examples, encodings)):
        tags = ["O"] * len(example.tokens)  # words cut off by truncation count as O
        seen = set()
        for position, word in enumerate(encoding.word_ids):
            if word is not None and word not in seen:
                seen.add(word)
                tags[word] = labels[best[row, position]]
        if unseen is not None and getattr(encoding, "overflowing", None):  # truncated: words after the last seen
            unseen.append(len(example.tokens) - 1 - max(seen, default=-1))
        predictions.append(tags)
    return predictions
