"""Image classification: images in (paths, bytes, PIL images, uint8 arrays), the top-k labels out."""

from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..manifest import Manifest, Task
from ..postprocess import Classification, softmax
from .base import TaskSpec, distinct_labels, labels_of

DEFAULT_TOP = 5


class ImageClassification(TaskSpec):
    task = Task.IMAGE_CLASSIFICATION
    description = "a label per image (ImageNet classes, defects, species)"

    def preprocessor(self, folder: Path, manifest: Manifest):
        if manifest.image is None:
            return None
        from ..images.preprocess import ImagePreprocessor

        return ImagePreprocessor(manifest.image, manifest.inputs)

    def predict(self, session, items: Any, top: int = DEFAULT_TOP) -> list[Classification]:
        """One Classification per image: the best label and score, and `scores` holding the `top`
        best labels, best first."""
        if session.encoder is None:
            raise InputError(
                "this image-classification artifact records no image preprocessing",
                hint=f"call run(feeds) with arrays for its inputs {[spec.name for spec in session.manifest.inputs]}",
            )
        if isinstance(top, bool) or not isinstance(top, numbers.Integral) or top < 1:
            raise InputError(f"top must be a positive integer, found {top!r}")
        feeds, _ = session.encoder.encode(items)
        logits = next(iter(session.run_checked(feeds).values()))
        return top_k(np.asarray(logits), distinct_labels(labels_of(session.manifest, logits)), int(top))

    def describe(self, items: list, predictions: list[Classification]) -> tuple[list[dict], list[str]]:
        records = [{"image": str(item), **p.to_dict()} for item, p in zip(items, predictions)]
        lines = [
            f"{item}\n" + "\n".join(f"  {score:.4f}  {label}" for label, score in p.scores.items())
            for item, p in zip(items, predictions)
        ]
        return records, lines


def top_k(logits: np.ndarray, labels: tuple[str, ...], top: int) -> list[Classification]:
    probs = softmax(logits.reshape(len(logits), -1).astype(np.float64))
    results = []
    for row in probs:
        order = np.argsort(-row, kind="stable")[:top]
        scores = {labels[i]: float(row[i]) for i in order}
        results.append(Classification(labels[int(order[0])], float(row[order[0]]), scores))
    return results


SPEC = ImageClassification()
