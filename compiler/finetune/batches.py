"""Training batches: tokenised per batch (dynamic padding) with labels aligned to sub-tokens."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

from edgekiln.runtime.preprocess import TextEncoder

from ..data import Dataset, DataTask
from ..tasks import compiler_task
from .config import FinetuneConfig

IGNORE = -100  # label of sub-tokens that carry no loss (continuations, specials, padding)


GROUP = 50  # batches per length-sorted group


def epoch_order(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """A seeded shuffle in which each batch holds examples of similar length (less padding, faster
    steps), while the batches themselves come in random order; a short last batch stays last, so that
    slicing the order into batches again (`iterate_batches`) gives these very batches."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    span = batch_size * GROUP
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        order[start : start + span] = chunk[np.argsort(lengths[chunk], kind="stable")]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    full = len(order) // batch_size
    return np.concatenate([batches[i] for i in rng.permutation(full)] + batches[full:])


def example_lengths(dataset: Dataset) -> np.ndarray:
    if dataset.task is DataTask.TEXT_CLASSIFICATION:
        return np.asarray([len(e.text.split()) for e in dataset.examples])
    return np.asarray([len(e.tokens) for e in dataset.examples])


def iterate_batches(
    dataset: Dataset, encoder: TextEncoder, label_ids: dict[str, int], order: np.ndarray, batch_size: int, skip: int = 0
) -> Iterator[tuple[dict[str, np.ndarray], np.ndarray]]:
    """(feeds, labels) per batch in `order`, skipping the first `skip` batches (resume mid-epoch)."""
    for start in range(skip * batch_size, len(order), batch_size):
        examples = [dataset.examples[i] for i in order[start : start + batch_size]]
        yield encode_batch(dataset.task, examples, encoder, label_ids)


def encode_batch(
    task: DataTask, examples: Sequence, encoder: TextEncoder, label_ids: dict[str, int]
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    if task is DataTask.TEXT_CLASSIFICATION:
        feeds, _ = encoder.encode([e.text for e in examples])
        return feeds, np.asarray([label_ids[e.label] for e in examples], dtype=np.int64)
    feeds, encodings = encoder.encode_words([e.tokens for e in examples])
    labels = np.full(feeds["input_ids"].shape, IGNORE, dtype=np.int64)
    for row, (example, encoding) in enumerate(zip(examples, encodings)):
        seen = set()
        for position, word in enumerate(encoding.word_ids):
            if word is not None and word not in seen:
                seen.add(word)
                labels[row, position] = label_ids[example.tags[word]]
    return feeds, labels


Batch = tuple[dict[str, np.ndarray], np.ndarray]


class Batches(Protocol):
    """The training split as seeded batches of (feeds, labels), epoch by epoch."""

    def steps(self) -> int:
        """Batches per epoch."""

    def epoch(self, epoch: int, skip: int) -> Iterator[Batch]:
        """Epoch `epoch`'s batches (0-based), without the first `skip` (resume mid-epoch)."""


class TextBatches:
    """Texts tokenised per batch (dynamic padding), length-grouped within a seeded shuffle."""

    def __init__(self, dataset: Dataset, encoder: TextEncoder, labels: tuple[str, ...], config: FinetuneConfig):
        self.dataset, self.encoder, self.config = dataset, encoder, config
        self.label_ids = {label: i for i, label in enumerate(labels)}
        self.lengths = example_lengths(dataset)

    def steps(self) -> int:
        return math.ceil(len(self.dataset) / self.config.batch_size)

    def epoch(self, epoch: int, skip: int) -> Iterator[Batch]:
        order = epoch_order(self.lengths, self.config.batch_size, self.config.seed, epoch)
        return iterate_batches(self.dataset, self.encoder, self.label_ids, order, self.config.batch_size, skip)


def training_batches(dataset: Dataset, encoder, labels: tuple[str, ...], config: FinetuneConfig) -> Batches:
    """Text batches for text tasks; decoded, augmented, preprocessed image batches for image tasks."""
    if compiler_task(dataset.task).text_input:
        return TextBatches(dataset, encoder, labels, config)
    from .image_batches import ImageBatches

    return ImageBatches(dataset, encoder, labels, config)
