"""Image datasets: a folder with one sub-folder per class (torchvision's ImageFolder layout), a
folder of images with no classes (calibration), or a CSV/TSV with a path column and a label column.

Only paths are read here; pixels are decoded when the model runs, by the runtime's decoder (so a
bad image is one error naming its file, and memory holds one batch of pixels at a time).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from .types import DataError, DataFormat, Dataset, DataTask, ImageExample

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
PATH_COLUMNS = ("path", "image", "file", "filename", "image_path", "filepath", "file_path")
LABEL_COLUMNS = ("label", "labels", "class", "category", "target")


def read_image_data(
    path: Path, split: str | None, chosen: DataFormat | None, label_column: str | None = None
) -> Dataset | None:
    """The image dataset at `path` (and `split`), or None when it is not image data."""
    if chosen not in (None, DataFormat.IMAGE_FOLDER, DataFormat.CSV, DataFormat.TSV):
        return None
    if path.is_dir():
        folder = path / split if split is not None else path
        if split is not None and not folder.is_dir():
            return None
        if split is None:
            _refuse_split_layout(folder)
        if chosen is DataFormat.IMAGE_FOLDER or holds_images(folder):
            if label_column is not None:
                raise DataError(
                    f"--label-column names a table's column; {folder} is an image folder, labelled by its sub-folders",
                    hint="drop --label-column",
                )
            return read_image_folder(folder)
        return None
    if split is None and chosen is not DataFormat.IMAGE_FOLDER and path.suffix.lower() in (".csv", ".tsv", ".tab"):
        return read_image_table(path, label_column)
    if chosen is DataFormat.IMAGE_FOLDER:
        raise DataError(f"{path} is a file; the image-folder format is a folder of class sub-folders")
    return None


SPLIT_NAMES = ("train", "training", "val", "valid", "validation", "dev", "test", "testing", "eval")


def _refuse_split_layout(folder: Path) -> None:
    """FOLDER/train/CLASS/… given as FOLDER: its split folders would read as classes (their images lie
    below them), a train-versus-test classifier. One error naming the splits instead."""
    children = [c for c in folder.iterdir() if c.is_dir() and not c.name.startswith(".")]
    splits = sorted(
        c.name for c in children if c.name.lower() in SPLIT_NAMES and not any(_images(c)) and _any_image_below(c)
    )
    if splits:
        raise DataError(
            f"{folder} holds the image splits {splits} (FOLDER/SPLIT/CLASS/IMAGE)",
            hint=f"choose one as {folder}:{splits[0]}",
        )


def read_image_folder(folder: Path) -> Dataset:
    """Labelled by sub-folder name, or (no sub-folders with images) every image unlabelled."""
    classes = sorted(child for child in folder.iterdir() if child.is_dir() and not child.name.startswith("."))
    examples = [ImageExample(str(image), child.name) for child in classes for image in _images_below(child)]
    if not examples:
        examples = [ImageExample(str(image), "") for image in _images(folder)]
    if not examples:
        raise DataError(
            f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})",
            hint="lay it out as FOLDER/CLASS/IMAGE.jpg, or put the images directly in it (unlabelled)",
        )
    return Dataset(DataTask.IMAGE_CLASSIFICATION, tuple(examples), str(folder))


def read_image_table(path: Path, label_column: str | None = None) -> Dataset | None:
    """A CSV/TSV whose header names a path column; None when it names none (then it is text data)."""
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle, delimiter=delimiter)
            header = [name.strip().lower() for name in next(reader, [])]
            path_column = next((header.index(name) for name in PATH_COLUMNS if name in header), None)
            if path_column is None:
                _refuse_unnamed_paths(path, header, next(reader, []))
                return None  # not an image table: the text readers take it
            rows = [header, *reader]
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except (OSError, csv.Error) as exc:
        raise DataError(f"cannot read {path} ({exc})") from None
    if label_column is not None and label_column.strip().lower() not in header:
        raise DataError(f"{path} has no label column {label_column!r} (columns: {', '.join(header)})")
    names = (label_column.strip().lower(),) if label_column is not None else LABEL_COLUMNS
    label_column = next((header.index(name) for name in names if name in header), None)
    examples = []
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            raise DataError(f"{path} line {line} has {len(row)} fields, its header {len(header)}")
        image = Path(row[path_column].strip())
        image = image if image.is_absolute() else path.parent / image
        if not image.is_file():
            raise DataError(
                f"{path} line {line}: image {image} " + ("is a folder" if image.is_dir() else "does not exist"),
                hint="list image files; paths are read relative to the CSV/TSV file's folder",
            )
        examples.append(ImageExample(str(image), row[label_column].strip() if label_column is not None else ""))
    if not examples:
        raise DataError(f"{path} lists no images")
    return Dataset(DataTask.IMAGE_CLASSIFICATION, tuple(examples), str(path))


def _refuse_unnamed_paths(path: Path, header: list[str], first: list[str]) -> None:
    """A table listing image files under a column name the readers do not know: named, with the fix
    (the text readers would say it has no text column)."""
    listed = [
        name
        for name, cell in zip(header, first)
        if Path(cell.strip()).suffix.lower() in IMAGE_SUFFIXES and (path.parent / cell.strip()).is_file()
    ]
    if listed:
        raise DataError(
            f"{path} lists image files in column {listed[0]!r}; an image table names that column "
            f"{', '.join(PATH_COLUMNS)}",
            hint=f"rename the column {listed[0]!r} to path (and the class column to label)",
        )


def holds_images(folder: Path) -> bool:
    if any(_images(folder)):
        return True
    return any(
        _any_image_below(child) for child in folder.iterdir() if child.is_dir() and not child.name.startswith(".")
    )


def _any_image_below(folder: Path) -> bool:
    """Whether a folder holds an image at any depth (stops at the first: no sorted walk of a million files)."""
    for _root, _dirs, files in _walk(folder):
        if any(Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".") for name in files):
            return True
    return False


def _images_below(folder: Path):
    """A class folder's images, its sub-folders' included and linked folders followed (as torchvision's
    ImageFolder walks them), in sorted order."""
    found = []
    for root, _dirs, files in _walk(folder):
        found += [
            Path(root) / name
            for name in files
            if Path(name).suffix.lower() in IMAGE_SUFFIXES and not name.startswith(".")
        ]
    return (path for path in sorted(found) if path.is_file())


def _walk(folder: Path):
    """os.walk following links to folders, each real folder once (a link loop ends), hidden ones skipped."""
    seen: set[str] = set()
    for root, dirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield root, dirs, files


def _images(folder: Path):
    return (
        path
        for path in sorted(folder.iterdir())
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
    )
