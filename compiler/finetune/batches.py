"""Training batches: tokenised per batch (dynamic padding) with labels aligned to sub-tokens."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from edgekiln.runtime.preprocess import TextEncoder

from ..data import Dataset, DataTask

IGNORE = -100  # label of sub-tokens that carry no loss (continuations, specials, padding)


GROUP = 50  # batches per length-sorted group


def epoch_order(lengths: np.ndarray, batch_size: int, seed: int, epoch: int) -> np.ndarray:
    """A seeded shuffle in which each batch holds examples of similar length (less padding, faster
    steps), while the batches themselves come in random order."""
    rng = np.random.default_rng([seed, epoch])
    order = rng.permutation(len(lengths))
    span = batch_size * GROUP
    for start in range(0, len(order), span):
        chunk = order[start : start + span]
        order[start : start + span] = chunk[np.argsort(lengths[chunk], kind="stable")]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return np.concatenate([batches[i] for i in rng.permutation(len(batches))])


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
