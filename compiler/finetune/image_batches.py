"""Image training batches: each image decoded and preprocessed by the runtime's own code (the
`ImagePreprocessor` an artifact runs at inference, so training sees exactly what serving sees),
with seeded augmentation on the training split applied to the decoded image before it.

Augmentation is torchvision's RandomResizedCrop area/aspect sampling (the crop then goes through the
model's resize, centre crop and normalisation) and a horizontal flip. Every image's random draws
come from (seed, epoch, image index), so a run, and a run resumed mid-epoch, sees the same tensors.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from edgekiln.runtime.errors import InputError
from edgekiln.runtime.images.decode import check_header, load_rgb, pillow
from edgekiln.runtime.images.preprocess import ImagePreprocessor

from ..data import DataError, Dataset
from .batches import Batch
from .config import AugmentSettings, FinetuneConfig

CROP_TRIES = 10


class ImageBatches:
    def __init__(self, dataset: Dataset, encoder: ImagePreprocessor, labels: tuple[str, ...], config: FinetuneConfig):
        if not isinstance(encoder, ImagePreprocessor):
            raise TypeError(f"internal: image batches need an ImagePreprocessor, not {type(encoder).__name__}")
        self.dataset, self.preprocessor, self.config = dataset, encoder, config
        self.label_ids = {label: i for i, label in enumerate(labels)}

    def steps(self) -> int:
        return len(self._spans())

    def epoch(self, epoch: int, skip: int) -> Iterator[Batch]:
        order = np.random.default_rng([self.config.seed, epoch]).permutation(len(self.dataset))
        for start, stop in self._spans()[skip:]:
            indices = order[start:stop]
            yield self.tensors(indices, epoch), self.labels(indices)

    def tensors(self, indices, epoch: int) -> dict[str, np.ndarray]:
        """The model inputs of these examples in `epoch`, augmented as the config says."""
        batch = [self._tensor(int(index), epoch) for index in indices]
        return {self.preprocessor.spec.input: np.stack(batch)}

    def labels(self, indices) -> np.ndarray:
        return np.asarray([self.label_ids[self.dataset.examples[int(i)].label] for i in indices], dtype=np.int64)

    def _spans(self) -> list[tuple[int, int]]:
        """Batch bounds; a last batch of one image joins the one before (batch norm needs two)."""
        size, count = self.config.batch_size, len(self.dataset)
        spans = [(start, min(start + size, count)) for start in range(0, count, size)]
        if len(spans) > 1 and spans[-1][1] - spans[-1][0] == 1:
            spans[-2:] = [(spans[-2][0], count)]
        return spans

    def _tensor(self, index: int, epoch: int) -> np.ndarray:
        path = self.dataset.examples[index].path
        try:
            image = load_rgb(path)
        except InputError as exc:
            raise DataError(
                f"training image in {self.dataset.source}: {exc.message}",
                hint="remove or replace it; the same command then resumes",
            ) from None
        if self.config.augment is not None:
            rng = np.random.default_rng([self.config.seed, epoch, index])
            image = augment(image, self.config.augment, rng)
        return self.preprocessor.tensor(image)


def augment(image: Any, settings: AugmentSettings, rng: np.random.Generator) -> Any:
    """A random crop (area fraction and aspect drawn as RandomResizedCrop does) and maybe a flip."""
    Image, _ = pillow()
    left, top, width, height = crop_box(image.size, settings, rng)
    image = image.crop((left, top, left + width, top + height))
    if settings.flip and rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return image


def crop_box(size: tuple[int, int], settings: AugmentSettings, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(left, top, width, height) of the crop; when no draw fits in CROP_TRIES, the largest centred
    crop within the aspect range (torchvision's fallback)."""
    width, height = size
    area = width * height
    log_low, log_high = math.log(settings.crop_ratio[0]), math.log(settings.crop_ratio[1])
    for _ in range(CROP_TRIES):
        target = area * rng.uniform(*settings.crop_scale)
        ratio = math.exp(rng.uniform(log_low, log_high))
        w, h = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1)), w, h
    w, h = width, height
    if width / height < settings.crop_ratio[0]:
        h = round(width / settings.crop_ratio[0])
    elif width / height > settings.crop_ratio[1]:
        w = round(height * settings.crop_ratio[1])
    return (width - w) // 2, (height - h) // 2, w, h


def check_image_files(*datasets: Dataset) -> None:
    """Every image's header, before training: a file that is no image is one error, not a failure
    an hour in (a truncated body still surfaces when it is decoded)."""
    for dataset in datasets:
        for example in dataset.examples:
            try:
                check_header(example.path)
            except InputError as exc:
                raise DataError(f"{dataset.source}: {exc.message}", hint=exc.hint) from None
