"""Image data for pruning an image classifier: the roles resolved (train, dev, calibration), batches
through the runtime's own preprocessing (the tensors the artifact will see), label ids in the model's
output order, and the model measured on the dev images (accuracy, agreement with the unpruned model)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from edgekiln.runtime.images.spec import ImagePreprocessSpec

from ..data import DataError, Dataset, DataTask, load_dataset, split_off
from ..errors import CompileError
from .config import Importance, PruneConfig, RecoveryConfig

BATCH = 32
HOLD_OUT = 0.1  # of the training images, for the dev measurements when no --eval-data is given


@dataclass(frozen=True)
class ImageData:
    train: Dataset | None  # labelled or not: importance scores and recovery
    dev: Dataset | None  # accuracy (when labelled) and agreement before/after
    calibration: Dataset | None  # unlabelled images: label-free scores and recovery without --data

    @property
    def scoring(self) -> Dataset | None:
        return self.train if self.train is not None else self.calibration


def resolve_image_data(data: dict, config: PruneConfig, recovery: RecoveryConfig | None) -> ImageData:
    """The recipe's data roles as image datasets, checked against the importance and recovery asked for."""
    train, dev = _images("train", data.get("train")), _images("dev", data.get("dev"))
    calibration = _images("calibration", data.get("calibration")) if train is None else None
    if config.importance is Importance.TAYLOR and (train is None or not _labelled(train)):
        found = "no --data" if train is None else f"{train.source} has no labels"
        raise CompileError(
            f"Taylor importance scores channels with the loss on labelled images; {found}",
            hint="pass --data FOLDER (one sub-folder per class), or --prune-importance taylor-label-free "
            "(the model's own predictions as labels) or magnitude",
        )
    if config.importance is Importance.TAYLOR_LABEL_FREE and train is None and calibration is None:
        raise CompileError("label-free importance needs images", hint="pass --data FOLDER or --calibration FOLDER")
    if recovery is not None and train is None and calibration is None:
        raise CompileError(
            "--recover needs training images: --data FOLDER (labelled or not) or --calibration FOLDER",
            hint="the pruned model is distilled from the unpruned one on those images",
        )
    if dev is not None and not _labelled(dev):
        raise DataError(f"--eval-data {dev.source} has unlabelled images", hint="lay it out as FOLDER/CLASS/IMAGE")
    if dev is None and train is not None and len(train) >= 20:
        train, dev = split_off(train, HOLD_OUT, config.seed)
    return ImageData(train, dev, calibration)


def _images(role: str, value) -> Dataset | None:
    if value is None:
        return None
    dataset = value if isinstance(value, Dataset) else load_dataset(value)
    if dataset.task is not DataTask.IMAGE_CLASSIFICATION:
        flag = {"train": "--data", "dev": "--eval-data", "calibration": "--calibration"}.get(role, role)
        raise DataError(
            f"{flag} {dataset.source} is {dataset.task.value} data; pruning an image classifier takes images",
            hint="pass a folder of class folders of images, or a CSV/TSV of path,label",
        )
    return dataset


def _labelled(dataset: Dataset) -> bool:
    return all(example.label for example in dataset.examples)


def label_ids(dataset: Dataset, labels: tuple[str, ...]) -> dict[str, int] | None:
    """Dataset label -> model output index (equal names, or "i" for a default "LABEL_i"); None when the
    images are unlabelled."""
    if not _labelled(dataset):
        return None
    index = {label: i for i, label in enumerate(labels)}
    mapping = {}
    for label in dataset.labels:
        found = index.get(label, index.get(f"LABEL_{label}"))
        if found is None:
            raise DataError(
                f"class {label!r} of {dataset.source} is not among the model's labels {list(labels)[:10]}",
                hint="prune with images of the classes the model was trained on (folder names = label names)",
            )
        mapping[label] = found
    return mapping


def batches(
    dataset: Dataset, encoder, labels: tuple[str, ...], order=None, size: int = BATCH, *, gold: bool = True
) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """(pixels, label ids or None) per batch, through the runtime's image preprocessing (`gold`
    False: the data's labels are not read)."""
    ids = label_ids(dataset, labels) if gold else None
    order = np.arange(len(dataset)) if order is None else order
    for start in range(0, len(order), size):
        examples = [dataset.examples[i] for i in order[start : start + size]]
        feeds, _ = encoder.encode([example.path for example in examples])
        pixels = next(iter(feeds.values()))
        yield pixels, None if ids is None else np.asarray([ids[e.label] for e in examples], dtype=np.int64)


def sample(dataset: Dataset, count: int | None, seed: int) -> Dataset:
    if count is None or count >= len(dataset):
        return dataset
    keep = np.sort(np.random.default_rng(seed).permutation(len(dataset))[:count])
    return dataset.subset(keep.tolist(), f"{dataset.source} ({count} sampled)")


def model_labels(labels: tuple[str, ...] | None, outputs: int) -> tuple[str, ...]:
    """The model's label names; a module without declared labels answers "LABEL_i" (data "i" matches)."""
    return tuple(labels) if labels else tuple(f"LABEL_{i}" for i in range(outputs))


def predictions(module, dataset: Dataset, encoder, labels) -> tuple[np.ndarray, np.ndarray | None]:
    """(top-1 output index per image, gold ids or None)."""
    import torch

    module.eval()
    top, gold = [], []
    with torch.inference_mode():
        for pixels, ids in batches(dataset, encoder, labels, size=64):
            top.append(module(torch.from_numpy(pixels)).argmax(dim=-1).numpy())
            gold.append(ids)
    return np.concatenate(top), None if gold[0] is None else np.concatenate(gold)


def measure(module, teacher_top: np.ndarray | None, data: ImageData, encoder, labels) -> dict | None:
    """Accuracy in points on the dev images (when labelled) and top-1 agreement with the unpruned model."""
    if data.dev is None:
        return None
    top, gold = predictions(module, data.dev, encoder, labels)
    return {
        "accuracy": None if gold is None else round(100 * float(np.mean(top == gold)), 3),
        "agreement": None if teacher_top is None else round(100 * float(np.mean(top == teacher_top)), 3),
    }


def image_encoder_for(spec: ImagePreprocessSpec):
    from ..evaluate.predictors import image_encoder

    return image_encoder(spec)
