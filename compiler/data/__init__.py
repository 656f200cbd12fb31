"""Dataset loading: `load_dataset("PATH[:split]")` for TSV/CSV, JSONL, CoNLL and `datasets` folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .conll import read_conll
from .hf_disk import is_saved_dataset, read_saved_dataset
from .tabular import read_delimited, read_jsonl
from .types import DataError, Dataset, DataTask, TextExample, TokenExample

_READERS = {".tsv": "delimited", ".tab": "delimited", ".csv": "delimited", ".jsonl": "jsonl", ".json": "jsonl",
            ".conll": "conll", ".bio": "conll", ".iob": "conll", ".txt": "conll"}
_SPLIT_ALIASES = {"validation": ("validation", "dev", "valid", "val"), "dev": ("dev", "validation", "valid", "val"),
                  "test": ("test",), "train": ("train",)}


def load_dataset(spec: str | Path, *, text_column: str | None = None, label_column: str | None = None,
                 task: DataTask | None = None) -> Dataset:
    """Load `PATH` or `PATH:SPLIT` (a split of a `datasets` folder, or the file SPLIT.* in a folder)."""
    path, split = parse_spec(str(spec))
    if path.is_dir():
        if is_saved_dataset(path):
            dataset = read_saved_dataset(path, split, text_column=text_column, label_column=label_column)
        else:
            dataset = _read_file(_split_file(path, split), text_column, label_column)
    elif split is not None:
        raise DataError(f"{path} is a file; ':{split}' selects a split only in a folder",
                        hint="pass the file alone, or the folder holding SPLIT.tsv/.jsonl/.conll files")
    else:
        dataset = _read_file(path, text_column, label_column)
    if task is not None and dataset.task is not task:
        raise DataError(f"{dataset.source} is {dataset.task.value} data, but the task is {task.value}")
    return dataset


def parse_spec(spec: str) -> tuple[Path, str | None]:
    if Path(spec).exists() or ":" not in spec:
        path, split = Path(spec), None
    else:
        head, split = spec.rsplit(":", 1)
        path = Path(head)
    if not path.exists():
        raise DataError(f"dataset {path} does not exist")
    return path, split or None


def _split_file(folder: Path, split: str | None) -> Path:
    if split is None:
        raise DataError(f"{folder} is a folder; choose a split file as {folder}:SPLIT (e.g. {folder}:train)")
    candidates = [folder / f"{name}{suffix}" for name in _SPLIT_ALIASES.get(split, (split,)) for suffix in _READERS]
    found = [path for path in candidates if path.is_file()]
    if not found:
        present = sorted(p.name for p in folder.iterdir() if p.suffix in _READERS)
        raise DataError(f"{folder} has no {split} file (found: {', '.join(present) or 'none'})")
    return found[0]


def _read_file(path: Path, text_column: str | None, label_column: str | None) -> Dataset:
    kind = _READERS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"cannot tell the format of {path}",
                        hint=f"use one of {', '.join(sorted(_READERS))}, or a datasets folder")
    if path.stat().st_size == 0:
        raise DataError(f"{path} is empty")
    try:
        if kind == "conll":
            return read_conll(path)
        reader = read_delimited if kind == "delimited" else read_jsonl
        return reader(path, text_column=text_column, label_column=label_column)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def split_off(dataset: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """Seeded random split: (the rest, `fraction` held out)."""
    if not 0 < fraction < 1:
        raise DataError(f"the split fraction must be between 0 and 1, found {fraction}")
    order = np.random.default_rng(seed).permutation(len(dataset))
    cut = max(1, int(round(len(dataset) * fraction)))
    if cut >= len(dataset):
        raise DataError(f"{dataset.source} has {len(dataset)} examples: too few to hold out {fraction:.0%}")
    held, rest = sorted(order[:cut].tolist()), sorted(order[cut:].tolist())
    return (dataset.subset(rest, f"{dataset.source} ({1 - fraction:.0%}, seed {seed})"),
            dataset.subset(held, f"{dataset.source} (held-out {fraction:.0%}, seed {seed})"))


__all__ = ["DataError", "DataTask", "Dataset", "TextExample", "TokenExample", "load_dataset", "parse_spec",
           "split_off"]
