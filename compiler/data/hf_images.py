"""The images of a `datasets` folder (an `Image` column, `save_to_disk`): written once, by content, to
files in the edgekiln cache, so that every image reader (training, evaluation, calibration) takes them
as it takes an image folder's; labels from a `ClassLabel` column's names."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
from pathlib import Path

from .images import LABEL_COLUMNS
from .types import DataError, Dataset, DataTask, ImageExample

FORMATS = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "WEBP": ".webp", "TIFF": ".tif"}


def saved_images(loaded, image: str, source: str, label_column: str | None) -> Dataset:
    from datasets import Image

    label = label_column or next((c for c in LABEL_COLUMNS if c in loaded.column_names), None)
    if label_column is not None and label_column not in loaded.column_names:
        raise DataError(f"{source} has no label column {label_column!r} (columns: {loaded.column_names})")
    raw = loaded.cast_column(image, Image(decode=False))
    names = None
    if label is not None:
        from .hf_disk import names_of

        names = names_of(loaded.features[label])
    folder = _cache_folder()
    examples = []
    for index, row in enumerate(raw):
        path = _materialise(row[image], folder, f"{source} row {index}")
        examples.append(ImageExample(str(path), _label(None if label is None else row[label], names)))
    if not examples:
        raise DataError(f"{source} holds no examples")
    return Dataset(DataTask.IMAGE_CLASSIFICATION, tuple(examples), source)


def _label(value, names: list[str] | None) -> str:
    """A ClassLabel's name; -1 (the `datasets` mark of an unlabelled row) and None: unlabelled ("")."""
    if value is None or (isinstance(value, int) and value < 0):
        return ""
    return names[value] if names and isinstance(value, int) else str(value)


def _materialise(cell, folder: Path, where: str) -> Path:
    """The image's bytes as a file named by their hash (written once); a path-only cell is read from disk."""
    content = (cell or {}).get("bytes")
    if content is None:
        stored = (cell or {}).get("path")
        if not stored or not Path(stored).is_file():
            raise DataError(f"{where}: the image holds no bytes and its path {stored!r} does not exist")
        content = Path(stored).read_bytes()
    digest = hashlib.sha256(content).hexdigest()[:32]
    target = folder / f"{digest}{_suffix(content)}"
    if not target.is_file():  # a name of its own per writer: two processes may write the same image
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
        partial.write_bytes(content)
        os.replace(partial, target)
    return target


def _suffix(content: bytes) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(content)) as image:
            return FORMATS.get(image.format or "", ".img")
    except (UnidentifiedImageError, OSError):
        return ".img"  # not an image: reading it later gives the error that names it


def _cache_folder() -> Path:
    from ..cache import default_cache_dir

    folder = default_cache_dir() / "dataset-images"
    folder.mkdir(parents=True, exist_ok=True)
    return folder
