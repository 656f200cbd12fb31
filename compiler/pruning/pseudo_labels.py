"""Recovery without labels: unlabelled text gets the unpruned model's predictions as labels, and
the recovery is pure distillation (the task term then only repeats the teacher's argmax)."""

from __future__ import annotations

import numpy as np

from ..data import Dataset, DataTask, TextExample
from ..errors import CompileError

HOLD_OUT = 0.1  # of the text, labelled the same way, to pick the best epoch by agreement with the teacher


def pseudo_labelled(text: Dataset, teacher, labels: tuple[str, ...], encoder, seed: int) -> tuple[Dataset, Dataset]:
    """(train, dev) from unlabelled text, labelled by the teacher; dev measures agreement with it."""
    import torch

    if text.task is not DataTask.TEXT_CLASSIFICATION:
        raise CompileError(
            "recovery from unlabelled data works for text classification",
            hint="token classifiers recover on labelled --data",
        )
    texts = [example.text for example in text.examples]
    predicted = []
    teacher.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), 64):
            feeds, _ = encoder.encode(texts[start : start + 64])
            logits = teacher(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits
            predicted.extend(int(i) for i in logits.argmax(dim=-1))
    examples = tuple(TextExample(t, labels[i]) for t, i in zip(texts, predicted))
    order = np.random.default_rng(seed).permutation(len(examples))
    cut = max(1, int(len(examples) * HOLD_OUT))
    source = f"{text.source} (labelled by the unpruned model)"
    train = Dataset(DataTask.TEXT_CLASSIFICATION, tuple(examples[i] for i in order[cut:]), source)
    dev = Dataset(DataTask.TEXT_CLASSIFICATION, tuple(examples[i] for i in order[:cut]), f"{source}, held out")
    return train, dev
