"""In-memory datasets: what every loader returns, whatever the file format."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from edgekiln.runtime.manifest import Task

from ..errors import CompileError


class DataError(CompileError):
    """A dataset file is missing, empty or malformed; the message names the file (and line)."""


class DataTask(str, Enum):
    TEXT_CLASSIFICATION = Task.TEXT_CLASSIFICATION.value
    TOKEN_CLASSIFICATION = Task.TOKEN_CLASSIFICATION.value
    IMAGE_CLASSIFICATION = Task.IMAGE_CLASSIFICATION.value


class DataFormat(str, Enum):
    """What `load_dataset(..., format=)` and `--data-format` accept, to force a reader."""

    TSV = "tsv"
    CSV = "csv"
    JSONL = "jsonl"
    CONLL = "conll"
    HF_DISK = "hf-disk"
    IMAGE_FOLDER = "image-folder"


@dataclass(frozen=True)
class TextExample:
    text: str
    label: str


@dataclass(frozen=True)
class TokenExample:
    tokens: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True)
class ImageExample:
    path: str  # decoded when the model runs
    label: str  # "" when unlabelled (calibration)


Example = TextExample | TokenExample | ImageExample


@dataclass(frozen=True)
class Dataset:
    task: DataTask
    examples: tuple[Example, ...]
    source: str  # file or folder (and split) it came from, for messages and reports

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def labels(self) -> tuple[str, ...]:
        """Label set, sorted; for token tasks the tags, with "O" first."""
        if self.task is not DataTask.TOKEN_CLASSIFICATION:
            found = {example.label for example in self.examples}
        else:
            found = {tag for example in self.examples for tag in example.tags}
        return tuple(sorted(found, key=lambda label: (label != "O", _entity_type(label), label)))

    def fingerprint(self) -> str:
        """Hash of the examples and where they came from (for cache keys); an image counts by its
        file's contents, so an image replaced under the same name is new data."""
        from edgekiln.runtime.hashing import sha256_json

        return sha256_json([self.source, [_identity(example) for example in self.examples]])

    def content_fingerprint(self) -> str:
        """Hash of the examples alone (a resumed fine-tune checks it): text by its content, so the same
        data under another path is the same data and other labels under the same name are not; an image
        by its label, resolved path, size and modification time (hashing every image would take minutes)."""
        from edgekiln.runtime.hashing import sha256_json

        return sha256_json([self.task.value, [_stated(example) for example in self.examples]])

    def subset(self, indices, source: str) -> Dataset:
        return Dataset(self.task, tuple(self.examples[i] for i in indices), source)


def _stated(example: Example) -> str:
    if not isinstance(example, ImageExample):
        return str(example)
    import os

    try:
        stat = os.stat(example.path)
    except OSError:  # unreadable: reading it later gives the error that names it
        return str(example)
    return f"{example.label}|{os.path.realpath(example.path)}|{stat.st_size}|{stat.st_mtime_ns}"


def _identity(example: Example) -> str:
    if not isinstance(example, ImageExample):
        return str(example)
    from pathlib import Path

    from edgekiln.runtime.hashing import sha256_file

    try:
        return f"{example.label}|{sha256_file(Path(example.path))}"
    except OSError:  # unreadable: reading it later gives the error that names it
        return str(example)


def _entity_type(label: str) -> str:
    return label.split("-", 1)[1] if "-" in label else label
