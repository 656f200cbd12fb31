"""Telling a data file's format by its content, for names that say nothing (CoNLL-2003 ships as
`eng.train`, `eng.testa`, `eng.testb`)."""

from __future__ import annotations

from pathlib import Path

from .types import DataFormat

_HEAD_BYTES = 64 * 1024
_HEAD_LINES = 50


def sniff_format(path: Path) -> DataFormat | None:
    """The format the first lines of `path` show, or None when they do not tell."""
    with open(path, "rb") as handle:
        head = handle.read(_HEAD_BYTES)
    lines = head.decode("utf-8-sig", errors="replace").split("\n")
    if len(head) == _HEAD_BYTES:
        lines = lines[:-1]  # the last line may be cut short
    lines = [line.rstrip("\r") for line in lines if line.strip()][:_HEAD_LINES]
    if not lines:
        return None
    if lines[0].lstrip().startswith("{"):
        return DataFormat.JSONL
    if lines[0].startswith("-DOCSTART-") or _token_per_line(lines):
        return DataFormat.CONLL
    if "\t" in lines[0]:
        return DataFormat.TSV
    if "," in lines[0]:
        return DataFormat.CSV
    return None


def _token_per_line(lines: list[str]) -> bool:
    """Every line a token and its columns, the same number of them, the last a tag (O, B-X, I-X)."""
    rows = [line.split() for line in lines if not line.startswith("-DOCSTART-")]
    widths = {len(row) for row in rows}
    if len(widths) != 1 or widths.pop() < 2:
        return False
    return all(row[-1] == "O" or (len(row[-1]) > 2 and row[-1][:2] in ("B-", "I-")) for row in rows)
