"""A Hugging Face `datasets` folder written with `save_to_disk` (a Dataset or a DatasetDict)."""

from __future__ import annotations

from pathlib import Path

from .tabular import LABEL_COLUMNS, TEXT_COLUMNS
from .types import DataError, Dataset, DataTask, TextExample, TokenExample

TOKEN_COLUMNS = ("tokens", "words")
TAG_COLUMNS = ("ner_tags", "tags", "labels", "label")


def is_saved_dataset(folder: Path) -> bool:
    return any((folder / name).is_file() for name in ("dataset_dict.json", "state.json", "dataset_info.json"))


def read_saved_dataset(
    folder: Path, split: str | None, *, text_column: str | None, label_column: str | None
) -> Dataset:
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{folder} is a Hugging Face datasets folder, which needs the `datasets` package",
            hint="pip install datasets",
        ) from None
    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as exc:  # datasets raises FileNotFoundError, ValueError, arrow errors
        raise DataError(f"cannot read the datasets folder {folder}: {exc}") from None
    source = str(folder)
    if isinstance(loaded, datasets.DatasetDict):
        found = next((name for name in split_aliases(split) if name in loaded), None) if split else None
        if found is None:
            raise DataError(
                f"{folder} holds splits {sorted(loaded)}; choose one as {folder}:SPLIT"
                + ("" if split is None else f" (no split {split!r})")
            )
        loaded, source = loaded[found], f"{folder}:{found}"
    elif split is not None:
        raise DataError(f"{folder} holds a single dataset, not splits; drop ':{split}'")
    columns = list(loaded.column_names)
    image = next((name for name, feature in loaded.features.items() if type(feature).__name__ == "Image"), None)
    if image is not None:
        from .hf_images import saved_images

        return saved_images(loaded, image, source, label_column)
    if any(name in columns for name in TOKEN_COLUMNS):
        return _tokens(loaded, columns, source)
    return _texts(loaded, columns, source, text_column, label_column)


def split_aliases(split: str) -> tuple[str, ...]:
    """The names a split may go by ("dev" is "validation" in most `datasets` releases)."""
    from . import _SPLIT_ALIASES

    return _SPLIT_ALIASES.get(split, (split,))


def names_of(feature) -> list[str] | None:
    feature = getattr(feature, "feature", feature)  # Sequence(ClassLabel) -> ClassLabel
    return list(getattr(feature, "names", None) or []) or None


def _texts(loaded, columns: list[str], source: str, text_column, label_column) -> Dataset:
    text = text_column or next((c for c in TEXT_COLUMNS if c in columns), None)
    label = label_column or next((c for c in LABEL_COLUMNS if c in columns), None)
    if text not in columns or label not in columns:
        raise DataError(
            f"{source} needs a text and a label column; it has {columns}",
            hint="name them with --text-column and --label-column",
        )
    names = names_of(loaded.features[label])
    examples = tuple(TextExample(str(row[text]), names[row[label]] if names else str(row[label])) for row in loaded)
    if not examples:
        raise DataError(f"{source} holds no examples")
    return Dataset(DataTask.TEXT_CLASSIFICATION, examples, source)


def _tokens(loaded, columns: list[str], source: str) -> Dataset:
    tokens = next(c for c in TOKEN_COLUMNS if c in columns)
    tags = next((c for c in TAG_COLUMNS if c in columns), None)
    if tags is None:
        raise DataError(f"{source} has a {tokens!r} column but no tag column (looked for {', '.join(TAG_COLUMNS)})")
    names = names_of(loaded.features[tags])
    examples = []
    for index, row in enumerate(loaded):
        row_tags = [names[t] if names else str(t) for t in row[tags]]
        if len(row_tags) != len(row[tokens]):
            raise DataError(f"{source} row {index}: {len(row[tokens])} tokens but {len(row_tags)} tags")
        examples.append(TokenExample(tuple(row[tokens]), tuple(row_tags)))
    if not examples:
        raise DataError(f"{source} holds no examples")
    return Dataset(DataTask.TOKEN_CLASSIFICATION, tuple(examples), source)
