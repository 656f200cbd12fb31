"""Calibration inputs for image models: a seeded sample of an image dataset (labels not needed),
through the artifact's own image preprocessing."""

from __future__ import annotations

import hashlib

import numpy as np

from edgekiln.runtime.images.spec import ImagePreprocessSpec

from ..data import DataError, Dataset, DataTask, load_dataset
from ..evaluate.predictors import image_encoder
from .calibration import BATCH, MIN_SAMPLES, CalibrationSet


def read_image_calibration(spec: str | Dataset) -> Dataset:
    dataset = spec if isinstance(spec, Dataset) else load_dataset(str(spec))
    if dataset.task is not DataTask.IMAGE_CLASSIFICATION:
        raise DataError(
            f"calibration data {dataset.source} is {dataset.task.value} data; this model takes images",
            hint="pass a folder of images (class sub-folders or none) or a CSV/TSV with a path column",
        )
    return dataset


def build_image_calibration(dataset: Dataset, spec: ImagePreprocessSpec, samples: int, seed: int = 0) -> CalibrationSet:
    if samples < MIN_SAMPLES:
        raise DataError(f"--calibration-samples {samples} is too few", hint=f"use at least {MIN_SAMPLES}")
    if len(dataset) < MIN_SAMPLES:
        raise DataError(
            f"calibration data {dataset.source} has {len(dataset)} images; at least {MIN_SAMPLES} are "
            "needed for meaningful activation ranges"
        )
    chosen = np.sort(np.random.default_rng(seed).permutation(len(dataset))[:samples])
    paths = [dataset.examples[i].path for i in chosen]
    encoder = image_encoder(spec)
    digest = hashlib.sha256(dataset.source.encode())
    feeds = []
    for start in range(0, len(paths), BATCH):
        batch, _ = encoder.encode(paths[start : start + BATCH])
        digest.update(batch[spec.input].tobytes())
        feeds.append(batch)
    return CalibrationSet(tuple(feeds), len(paths), dataset.source, digest.hexdigest())
