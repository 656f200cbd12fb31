"""Calibration inputs: token feeds sampled (seeded) from a dataset or from plain text lines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekiln.runtime.hashing import sha256_json
from edgekiln.runtime.preprocess import TextEncoder

from ..data import DataError, Dataset, DataTask, TextExample, TokenExample, load_dataset

MIN_SAMPLES = 8
BATCH = 8


@dataclass(frozen=True)
class CalibrationSet:
    feeds: tuple[dict[str, np.ndarray], ...]  # batches of up to BATCH examples
    samples: int
    source: str
    sha256: str


def read_calibration_examples(spec: str) -> Dataset:
    """Any dataset the loaders read; a `.txt` that is not CoNLL is read as one text per line."""
    path = Path(spec)
    try:
        return load_dataset(spec, labels_optional=True)  # calibration reads texts: a table needs no labels
    except DataError:
        if path.suffix.lower() != ".txt" or not path.is_file():
            raise
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as exc:
        raise DataError(f"calibration file {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not lines:
        raise DataError(f"calibration file {path} holds no text lines")
    return Dataset(DataTask.TEXT_CLASSIFICATION, tuple(TextExample(line, "") for line in lines), str(path))


def build_calibration(dataset: Dataset, encoder: TextEncoder, samples: int, seed: int = 0) -> CalibrationSet:
    if samples < MIN_SAMPLES:
        raise DataError(f"--calibration-samples {samples} is too few", hint=f"use at least {MIN_SAMPLES}")
    if len(dataset) < MIN_SAMPLES:
        raise DataError(
            f"calibration data {dataset.source} has {len(dataset)} examples; at least {MIN_SAMPLES} "
            "are needed for meaningful activation ranges"
        )
    chosen = np.sort(np.random.default_rng(seed).permutation(len(dataset))[:samples])
    examples = [dataset.examples[i] for i in chosen]
    feeds = []
    real_tokens = 0
    for start in range(0, len(examples), BATCH):
        batch = examples[start : start + BATCH]
        if isinstance(batch[0], TokenExample):
            encoded, encodings = encoder.encode_words([e.tokens for e in batch])
        else:
            encoded, encodings = encoder.encode([e.text for e in batch])
        real_tokens += sum(sum(1 for t in enc.special_tokens_mask if t == 0) for enc in encodings)
        feeds.append(encoded)
    if real_tokens == 0:
        raise DataError(
            f"calibration data {dataset.source} tokenizes to nothing (only special tokens)",
            hint="pass real text in the model's language",
        )
    digest = sha256_json({"source": dataset.source, "ids": [f["input_ids"].tolist() for f in feeds]})
    return CalibrationSet(tuple(feeds), len(examples), dataset.source, digest)
