"""Dataset loading: `load_dataset("PATH[:split]")` for TSV/CSV, JSONL, CoNLL and `datasets` folders.
The format comes from `format=`, else the file's extension, else its first lines."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .conll import read_conll
from .hf_disk import is_saved_dataset, read_saved_dataset
from .images import IMAGE_SUFFIXES, holds_images, read_image_data
from .sniff import sniff_format
from .tabular import read_delimited, read_jsonl
from .types import DataError, DataFormat, Dataset, DataTask, ImageExample, TextExample, TokenExample

_READERS = {
    ".tsv": DataFormat.TSV,
    ".tab": DataFormat.TSV,
    ".csv": DataFormat.CSV,
    ".jsonl": DataFormat.JSONL,
    ".json": DataFormat.JSONL,
    ".conll": DataFormat.CONLL,
    ".bio": DataFormat.CONLL,
    ".iob": DataFormat.CONLL,
    ".txt": DataFormat.CONLL,
}
_FORMATS = ", ".join(f.value for f in DataFormat)
_SPLIT_ALIASES = {
    "validation": ("validation", "dev", "valid", "val"),
    "dev": ("dev", "validation", "valid", "val"),
    "test": ("test",),
    "train": ("train",),
}


def load_dataset(
    spec: str | Path,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    task: DataTask | None = None,
    format: DataFormat | str | None = None,
    labels_optional: bool = False,
) -> Dataset:
    """Load `PATH` or `PATH:SPLIT` (a split of a `datasets` folder, or the file SPLIT.* in a folder);
    `format` (tsv, csv, jsonl, conll, hf-disk, image-folder) forces a reader, whatever the file is called.
    Image data (see images.py): a folder of class folders of images (PATH:SPLIT: its SPLIT sub-folder),
    a folder of images (unlabelled), or a CSV/TSV with a path column. `labels_optional` (calibration): a
    text table without a label column reads with empty labels."""
    chosen = _format(format)
    path, split = parse_spec(str(spec))
    images = read_image_data(path, split, chosen, label_column)  # class folders, or a CSV/TSV of image paths
    if images is not None:
        dataset = images
    elif path.is_dir():
        if chosen is DataFormat.HF_DISK or (chosen is None and is_saved_dataset(path)):
            dataset = read_saved_dataset(path, split, text_column=text_column, label_column=label_column)
        else:
            dataset = _read_file(_split_file(path, split), text_column, label_column, chosen, labels_optional)
    elif split is not None:
        raise DataError(
            f"{path} is a file; ':{split}' selects a split only in a folder",
            hint="pass the file alone, or the folder holding SPLIT.tsv/.jsonl/.conll files",
        )
    elif chosen is DataFormat.HF_DISK:
        raise DataError(f"{path} is a file; the hf-disk format is a folder written by datasets' save_to_disk")
    else:
        dataset = _read_file(path, text_column, label_column, chosen, labels_optional)
    if task is not None and dataset.task is not task:
        raise DataError(f"{dataset.source} is {dataset.task.value} data, but the task is {task.value}")
    _check_columns_apply(dataset, text_column, label_column)
    return dataset


def _check_columns_apply(dataset: Dataset, text_column: str | None, label_column: str | None) -> None:
    """Column names mean something for tables (and `datasets` folders); elsewhere they would be ignored."""
    ignored = [
        flag
        for flag, value, applies in (
            ("--text-column", text_column, dataset.task is DataTask.TEXT_CLASSIFICATION),
            ("--label-column", label_column, dataset.task is not DataTask.TOKEN_CLASSIFICATION),  # images: above
        )
        if value is not None and not applies
    ]
    if ignored:
        raise DataError(
            f"{' and '.join(ignored)} name table columns; {dataset.source} is {dataset.task.value} data without them",
            hint=f"drop {' and '.join(ignored)}",
        )


def _format(value: DataFormat | str | None) -> DataFormat | None:
    try:
        return None if value is None else DataFormat(value)
    except ValueError:
        raise DataError(f"unknown data format {value!r}", hint=f"use one of: {_FORMATS}") from None


def parse_spec(spec: str) -> tuple[Path, str | None]:
    if "\0" in spec:
        raise DataError(f"dataset path {spec!r} holds a NUL character")
    try:
        if Path(spec).exists() or ":" not in spec:
            path, split = Path(spec), None
        else:
            head, split = spec.rsplit(":", 1)
            path = Path(head)
        found = path.exists()
    except OSError as exc:  # a name too long, a permission denied on the way
        raise DataError(f"cannot look up dataset {spec[:200]!r} ({exc.strerror})") from None
    if not found:
        raise DataError(f"dataset {path} does not exist")
    return path, split or None


def _split_file(folder: Path, split: str | None) -> Path:
    if split is None:
        present = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))
        if not any(p.suffix in _READERS for p in folder.iterdir()):  # no split files either: say what data is
            holds = f"holds {', '.join(present[:5])}{', ...' if len(present) > 5 else ''}" if present else "is empty"
            raise DataError(
                f"{folder} {holds}: no images, no split files (SPLIT.tsv/.jsonl/.conll), no saved `datasets` dataset",
                hint="images: FOLDER/CLASS/IMAGE.jpg or the images directly in it; text: FOLDER:SPLIT",
            )
        raise DataError(f"{folder} is a folder; choose a split file as {folder}:SPLIT (e.g. {folder}:train)")
    names = _SPLIT_ALIASES.get(split, (split,))
    candidates = [folder / f"{name}{suffix}" for name in names for suffix in _READERS]
    candidates += sorted(path for name in names for path in folder.glob(f"*.{name}"))  # CoNLL-2003: eng.train
    found = [path for path in candidates if path.is_file()]
    if not found:
        present = sorted(p.name for p in folder.iterdir() if p.suffix in _READERS)
        images = (
            " (an image folder: its SPLIT is a sub-folder, FOLDER/SPLIT/CLASS/IMAGE)" if holds_images(folder) else ""
        )
        raise DataError(f"{folder} has no {split} file (found: {', '.join(present) or 'none'}){images}")
    return found[0]


def _read_file(
    path: Path,
    text_column: str | None,
    label_column: str | None,
    chosen: DataFormat | None = None,
    labels_optional: bool = False,
) -> Dataset:
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path} is empty")
        if chosen is None and path.suffix.lower() in IMAGE_SUFFIXES:
            raise DataError(
                f"{path} is one image; image data is a folder of them",
                hint="FOLDER/CLASS/IMAGE.jpg (labelled), the images directly in a folder, or a CSV/TSV with a path column",
            )
        kind = chosen or _READERS.get(path.suffix.lower()) or sniff_format(path)
        if kind is None:
            raise DataError(
                f"cannot tell the format of {path}: neither its name nor its first lines say",
                hint=f"name it .tsv/.csv/.jsonl/.conll, or force one with --data-format ({_FORMATS})",
            )
        if kind is DataFormat.CONLL:
            return read_conll(path)
        if kind is DataFormat.JSONL:
            return read_jsonl(path, text_column=text_column, label_column=label_column, labels_optional=labels_optional)
        return read_delimited(
            path,
            text_column=text_column,
            label_column=label_column,
            delimiter="\t" if kind is DataFormat.TSV else ",",
            labels_optional=labels_optional,
        )
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:  # read_delimited names the line; this is a fallback
        raise DataError(f"{path} is not well-formed delimited text ({exc})") from None
    except RecursionError:
        raise DataError(f"{path} nests data too deeply to read") from None
    except OSError as exc:
        raise DataError(f"cannot read {path} ({exc.strerror})") from None


def split_off(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Seeded random split: (the rest, `fraction` held out). Classification data is split per label
    (stratified): each label keeps its share on both sides, and at least one example in the rest, so a
    rare label never ends up held out alone."""
    if not 0 < fraction < 1:
        raise DataError(f"the split fraction must be between 0 and 1, found {fraction}")
    cut = max(1, int(round(len(dataset) * fraction)))
    if cut >= len(dataset):
        raise DataError(f"{dataset.source} has {len(dataset)} examples: too few to hold out {fraction:.0%}")
    rng = np.random.default_rng(seed)
    if dataset.task is DataTask.TOKEN_CLASSIFICATION:  # tags are per word: no label per example to keep
        held = rng.permutation(len(dataset))[:cut].tolist()
    else:
        held = _stratified(dataset, cut, rng)
        if not held:
            raise DataError(
                f"{dataset.source}: every label has a single example, so none can be held out without "
                "taking its label from training",
                hint="give dev data (--eval-data), or more examples per label",
            )
    chosen = set(held)
    rest = [i for i in range(len(dataset)) if i not in chosen]
    total = len(dataset)
    return (
        dataset.subset(rest, f"{dataset.source} ({len(rest)} of {total}, seed {seed})"),
        dataset.subset(sorted(held), f"{dataset.source} (held-out {len(held)} of {total}, seed {seed})"),
    )


def _stratified(dataset: Dataset, cut: int, rng: np.random.Generator) -> list[int]:
    """`cut` indices (fewer only when every label is down to one example in the rest) drawn per label in
    proportion to its size (then one at a time to the label furthest below its share)."""
    groups: dict[str, list[int]] = {}
    for index, example in enumerate(dataset.examples):
        groups.setdefault(example.label, []).append(index)
    labels = sorted(groups)
    for label in labels:
        groups[label] = [groups[label][i] for i in rng.permutation(len(groups[label]))]
    share = {label: len(groups[label]) * cut / len(dataset) for label in labels}
    room = {label: len(groups[label]) - 1 for label in labels}  # one example of each stays in training
    quota = {label: min(int(share[label]), room[label]) for label in labels}
    while sum(quota.values()) < cut:
        open_labels = [label for label in labels if quota[label] < room[label]]
        if not open_labels:
            break
        label = max(open_labels, key=lambda name: (share[name] - quota[name], name))  # the furthest below its share
        quota[label] += 1
    return [index for label in labels for index in groups[label][: quota[label]]]


__all__ = [
    "DataError",
    "DataFormat",
    "DataTask",
    "Dataset",
    "ImageExample",
    "TextExample",
    "TokenExample",
    "load_dataset",
    "parse_spec",
    "split_off",
]
