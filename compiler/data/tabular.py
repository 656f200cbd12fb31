"""TSV, CSV and JSONL files with a text column and a label column."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from .types import DataError, Dataset, DataTask, TextExample

TEXT_COLUMNS = ("sentence", "text", "content", "review", "document")
LABEL_COLUMNS = ("label", "labels", "class", "sentiment", "category")


def read_delimited(
    path: Path,
    *,
    text_column: str | None,
    label_column: str | None,
    delimiter: str | None = None,
    labels_optional: bool = False,
) -> Dataset:
    """TSV (tab, no quoting) or CSV (comma, quoted fields); by default the extension decides which.
    `labels_optional` (calibration texts): a table without a label column reads with empty labels."""
    if delimiter is None:
        delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
        try:
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path} is empty", hint="a header row naming the text and label columns is expected")
            text_at, label_at = _columns(path, header, text_column, label_column, labels_optional)
            rows = ((number, row) for number, row in enumerate(reader, start=2) if any(cell.strip() for cell in row))
            examples = tuple(_example(path, number, row, text_at, label_at, len(header)) for number, row in rows)
        except csv.Error as exc:
            raise _csv_error(path, reader.line_num, exc, delimiter) from None
    return _non_empty(path, examples)


def _csv_error(path: Path, line: int, exc: csv.Error, delimiter: str) -> DataError:
    kind = "TSV" if delimiter == "\t" else "CSV"
    if "field limit" in str(exc):
        limit = csv.field_size_limit() // 1024
        return DataError(
            f"{path}:{line}: a {kind} field is longer than {limit} KiB",
            hint="an unclosed quote makes the rest of a CSV file one field; check the quoting"
            if kind == "CSV"
            else "split the text, or check that the file is really TSV",
        )
    return DataError(f"{path}:{line}: not well-formed {kind} ({exc})")


def read_jsonl(
    path: Path, *, text_column: str | None, label_column: str | None, labels_optional: bool = False
) -> Dataset:
    examples = []
    text_key = label_key = None
    for number, record in _json_lines(path):
        if text_key is None:
            text_key = _pick(path, list(record), text_column, TEXT_COLUMNS, "text")
            unlabelled = labels_optional and label_column is None and not any(key in record for key in LABEL_COLUMNS)
            label_key = None if unlabelled else _pick(path, list(record), label_column, LABEL_COLUMNS, "label")
        missing = [key for key in (text_key, label_key) if key is not None and key not in record]
        if missing:
            raise DataError(f"{path}:{number}: record has no {missing[0]!r} key")
        if not isinstance(record[text_key], str):
            raise DataError(f"{path}:{number}: {text_key!r} must be a string, found {type(record[text_key]).__name__}")
        if not record[text_key].strip():
            raise DataError(f"{path}:{number}: empty text", hint="remove the record or give it its text")
        if label_key is None:
            examples.append(TextExample(record[text_key], ""))
            continue
        label = record[label_key]
        if isinstance(label, bool) or not isinstance(label, (str, int)) or not str(label).strip():
            found = "an empty string" if isinstance(label, str) else json.dumps(label)
            raise DataError(f"{path}:{number}: {label_key!r} must be a class name or number, found {found}")
        examples.append(TextExample(record[text_key], str(label).strip()))
    return _non_empty(path, tuple(examples))


def _json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            except (ValueError, RecursionError) as exc:  # a number too long to convert, nesting too deep
                raise DataError(f"{path}:{number}: cannot read this JSON ({exc or 'nested too deeply'})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{number}: expected a JSON object per line, found {type(record).__name__}")
            yield number, record


def _columns(
    path: Path, header: list[str], text_column: str | None, label_column: str | None, labels_optional: bool = False
) -> tuple[int, int | None]:
    names = [name.strip() for name in header]
    text = _pick(path, names, text_column, TEXT_COLUMNS, "text")
    unlabelled = labels_optional and label_column is None and not any(name in names for name in LABEL_COLUMNS)
    label = None if unlabelled else _pick(path, names, label_column, LABEL_COLUMNS, "label")
    for name in (text, label) if label is not None else (text,):
        if names.count(name) > 1:
            raise DataError(
                f"{path} has {names.count(name)} columns named {name!r}: which one is meant is not clear",
                hint="rename or remove the others",
            )
    return names.index(text), None if label is None else names.index(label)


def _pick(path: Path, names: list[str], chosen: str | None, defaults: tuple[str, ...], what: str) -> str:
    if chosen is not None:
        if chosen not in names:
            raise DataError(f"{path} has no {what} column {chosen!r} (columns: {', '.join(names)})")
        return chosen
    for name in defaults:
        if name in names:
            return name
    raise DataError(
        f"{path} has no {what} column (columns: {', '.join(names)}; looked for {', '.join(defaults)})",
        hint=f"name it with --{what}-column",
    )


def _example(path: Path, number: int, row: list[str], text_at: int, label_at: int | None, width: int) -> TextExample:
    if len(row) != width:
        raise DataError(f"{path}:{number}: expected {width} columns, found {len(row)}")
    label = row[label_at].strip() if label_at is not None else ""
    if not label and label_at is not None:
        raise DataError(f"{path}:{number}: empty label")
    text = row[text_at].strip()
    if not text:
        raise DataError(f"{path}:{number}: empty text", hint="remove the row or give it its text")
    return TextExample(text, label)


def _non_empty(path: Path, examples: tuple) -> Dataset:
    if not examples:
        raise DataError(f"{path} holds no examples")
    return Dataset(DataTask.TEXT_CLASSIFICATION, examples, str(path))
