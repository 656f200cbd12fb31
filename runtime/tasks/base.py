"""What a task is to the runtime: how inputs become tensors and how outputs become answers.

One module per task defines `SPEC`, a `TaskSpec`; `Session.predict` dispatches through it. The
compiler's side of a task (model heads, metrics, data) is in `edgekiln.compiler.tasks`.
"""

from __future__ import annotations

import collections
import functools
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..manifest import Manifest, Task
from ..preprocess import TextEncoder, check_texts


class TaskSpec(ABC):
    task: Task
    description: str

    def preprocessor(self, folder: Path, manifest: Manifest) -> Any | None:
        """What turns user inputs into feeds (a TextEncoder for text tasks), or None for raw tensors."""
        return None

    @abstractmethod
    def predict(self, session, items: Any) -> Any:
        """Answers for `items` (texts, for the text tasks), through the session's encoder and checked run."""

    def describe(self, items: list, predictions: Any) -> tuple[list[dict], list[str]] | None:
        """(JSON records, readable lines) for `edgekiln run`; None: the CLI's text listing."""
        return None


class TextTask(TaskSpec):
    """A task whose inputs are texts, tokenized as the manifest says."""

    def preprocessor(self, folder: Path, manifest: Manifest) -> TextEncoder | None:
        if manifest.tokenizer is None:
            return None
        return TextEncoder(folder, manifest.tokenizer, manifest.inputs)

    def predict(self, session, items: Sequence[str] | str, **options) -> Any:
        if options:
            raise InputError(
                f"{self.task.value} predictions take no options (given: {', '.join(options)})",
                hint="--top applies to image classification",
            )
        if session.encoder is None:
            raise InputError(
                f"this {self.task.value} artifact has no tokenizer",
                hint=f"call run(feeds) with arrays for its inputs {[spec.name for spec in session.manifest.inputs]}",
            )
        texts = check_texts(items)
        feeds, encodings = session.encoder.encode(texts)
        output = next(iter(session.run(feeds).values()))  # checked like any feeds (lengths, id ranges)
        return self.decode(output, session.manifest, encodings, texts)

    @abstractmethod
    def decode(self, output: np.ndarray, manifest: Manifest, encodings: list, texts: list[str]) -> Any:
        """The first model output, as this task's answers."""


def labels_of(manifest: Manifest, output: np.ndarray) -> tuple[str, ...]:
    return manifest.labels or tuple(str(i) for i in range(output.shape[-1]))


@functools.lru_cache(maxsize=64)
def distinct_labels(labels: tuple[str, ...]) -> tuple[str, ...]:
    """Class names as keys of a classifier's scores: a name given to more than one class (ImageNet-1k's
    Hugging Face id2label has two 'crane's and two 'maillot's) gains its index, "crane (134)", so that
    no class's score hides another's. Compiles do this already; an older artifact gets it here."""
    names = list(labels)
    while len(counts := collections.Counter(names)) < len(names):  # until no suffix collides with a name either
        names = [f"{name} ({index})" if counts[name] > 1 else name for index, name in enumerate(names)]
    return tuple(names)
