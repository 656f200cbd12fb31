"""Model outputs to predictions, per task."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class Classification:
    label: str
    score: float
    scores: dict[str, float]

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TokenTag:
    word: str
    start: int
    end: int
    tag: str
    score: float

    def to_dict(self) -> dict:
        return asdict(self)


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    shifted = logits - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=axis, keepdims=True)


def classify(logits: np.ndarray, labels: tuple[str, ...]) -> list[Classification]:
    probs = softmax(logits.astype(np.float64))
    results = []
    for row in probs:
        best = int(row.argmax())
        results.append(
            Classification(labels[best], float(row[best]), {label: float(p) for label, p in zip(labels, row)})
        )
    return results


def tag_tokens(logits: np.ndarray, labels: tuple[str, ...], encodings: list, texts: list[str]) -> list[list[TokenTag]]:
    """One tag per word: the prediction at the word's first sub-token (the usual convention)."""
    probs = softmax(logits.astype(np.float64))
    results = []
    for row, encoding, text in zip(probs, encodings, texts):
        words: list[TokenTag] = []
        seen: set[int] = set()
        for position, word_id in enumerate(encoding.word_ids):
            if word_id is None or word_id in seen:
                continue
            seen.add(word_id)
            start, end = encoding.word_to_chars(word_id)
            best = int(row[position].argmax())
            words.append(TokenTag(text[start:end], start, end, labels[best], float(row[position][best])))
        results.append(words)
    return results
