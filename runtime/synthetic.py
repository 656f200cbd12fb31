"""Synthetic inputs of a chosen batch and sequence size: for benchmarks, tracing and fidelity checks."""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from .manifest import TensorSpec

BATCH_AXIS = "batch"
SEQUENCE_AXIS = "sequence"
_RANGE_AXIS = re.compile(r"\[(\d+)\.\.(\d+)(?::(\d+))?\]$")  # an axis named NAME[MIN..MAX:MULTIPLE]


def make_text_feeds(
    batch: int,
    sequence: int,
    rng: np.random.Generator,
    *,
    names: Sequence[str],
    vocab_size: int,
    pad_id: int,
    max_length: int,
    pad_rows: bool = True,
) -> dict[str, np.ndarray]:
    """Random token ids. With `pad_rows`, every row but the first is right-padded to a random
    length, like a real batch; without, every row is `sequence` tokens long (benchmarks)."""
    sequence = min(sequence, max_length)
    ids = rng.integers(low=min(1000, vocab_size // 2), high=vocab_size, size=(batch, sequence), dtype=np.int64)
    mask = np.ones((batch, sequence), dtype=np.int64)
    for row in range(1, batch if pad_rows else 1):
        length = int(rng.integers(1, sequence + 1))
        mask[row, length:] = 0
        ids[row, length:] = pad_id
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {name: feeds[name] for name in names}


def make_tensor_feeds(
    inputs: Sequence[TensorSpec], batch: int, sequence: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Random tensors for raw-tensor models; `batch`/`sequence` fill the axes of those names."""
    feeds = {}
    for spec in inputs:
        shape = [_axis_size(axis, size, batch, sequence) for axis, size in enumerate(spec.shape)]
        dtype = np.dtype(spec.dtype)
        if dtype.kind == "f":
            feeds[spec.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype.kind == "b":
            feeds[spec.name] = np.ones(shape, dtype=dtype)
        elif spec.value_range is not None:  # an index input: any row of its tables
            feeds[spec.name] = rng.integers(0, spec.value_range[1] + 1, size=shape).astype(dtype)
        else:
            feeds[spec.name] = rng.integers(0, 2, size=shape).astype(dtype)
    return feeds


def _axis_size(axis: int, size: int | str, batch: int, sequence: int) -> int:
    """Fixed sizes stay; a dynamic axis named `batch`, or any dynamic first axis, gets `batch`;
    every other dynamic axis gets `sequence`."""
    if isinstance(size, int) and size >= 0:
        return size
    size = size if isinstance(size, str) else f"dim{axis}"  # -1: dynamic
    bounds = range_of(size)
    if bounds is not None:  # a declared range: the requested size, brought into it
        low, high, multiple = bounds
        wanted = batch if axis == 0 else sequence
        first, last = -(-low // multiple) * multiple, high // multiple * multiple
        return min(max(wanted // multiple * multiple, first), last)
    if size == BATCH_AXIS or (axis == 0 and size != SEQUENCE_AXIS):
        return batch
    return sequence


def outside_range(axis_name: str, size: int) -> str | None:
    """For an axis named after a declared range: None when `size` lies in it, else the range in words
    ("32..96, a multiple of 32"); None too for an axis without a range."""
    bounds = range_of(axis_name)
    if bounds is None or (bounds[0] <= size <= bounds[1] and size % bounds[2] == 0):
        return None
    return f"{bounds[0]}..{bounds[1]}" + (f", a multiple of {bounds[2]}" if bounds[2] > 1 else "")


def range_of(axis_name: str) -> tuple[int, int, int] | None:
    """(min, max, multiple) of an axis the compiler named after a declared range, else None."""
    match = _RANGE_AXIS.search(axis_name)
    return None if match is None else (int(match[1]), int(match[2]), int(match[3] or 1))
