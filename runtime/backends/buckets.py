"""Fixed-shape dispatch: run a request on the smallest compiled (batch, sequence) bucket that fits,
padding inside the runtime and cutting the padding off the outputs; bigger batches go in chunks."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import InputError
from .tvm_index import Bucket, TvmIndex

Runner = Callable[[Bucket, list[np.ndarray]], list[np.ndarray]]


def pick_bucket(index: TvmIndex, batch: int, sequence: int | None) -> Bucket:
    """The smallest bucket holding `sequence`, then the smallest batch holding `batch` (or the largest)."""
    fitting = [b for b in index.buckets if sequence is None or b.sequence is None or b.sequence >= sequence]
    if not fitting:
        longest = max(b.sequence or 0 for b in index.buckets)
        raise InputError(
            f"sequence length {sequence} exceeds the longest compiled bucket ({longest})",
            hint="truncate the input, or recompile with a longer --sequence-buckets entry",
        )
    shortest = min(b.sequence or 0 for b in fitting)
    same_length = sorted((b for b in fitting if (b.sequence or 0) == shortest), key=lambda b: b.batch)
    return next((b for b in same_length if b.batch >= batch), same_length[-1])


def run_bucketed(
    index: TvmIndex, feeds: dict[str, np.ndarray], output_names: list[str], runner: Runner
) -> dict[str, np.ndarray]:
    # a scalar (rank-0) input has no batch axis: every chunk gets it whole, and a scalar output is the first chunk's
    batched = [name for name in index.inputs if feeds[name].ndim > 0]
    batch = feeds[batched[0]].shape[0] if batched else 1
    sequence = _sequence_length(index, feeds)
    chunks: list[list[np.ndarray]] = []
    start = 0
    while start < batch:
        bucket = pick_bucket(index, batch - start, sequence)
        rows = min(bucket.batch, batch - start)
        padded = [
            _pad(index, name, feeds[name][start : start + rows], bucket) if name in batched else feeds[name]
            for name in index.inputs
        ]
        outputs = runner(bucket, padded)
        chunks.append([_cut(index, name, out, rows, sequence) for name, out in zip(output_names, outputs)])
        start += rows
    return {
        name: np.concatenate([chunk[i] for chunk in chunks]) if chunks[0][i].ndim else chunks[0][i]
        for i, name in enumerate(output_names)
    }


def _sequence_length(index: TvmIndex, feeds: dict[str, np.ndarray]) -> int | None:
    lengths = {feeds[name].shape[axis] for name, axis in index.sequence_axes.items()}
    if len(lengths) > 1:
        raise InputError(f"inputs disagree on the sequence length: {sorted(lengths)}")
    return lengths.pop() if lengths else None


def _pad(index: TvmIndex, name: str, array: np.ndarray, bucket: Bucket) -> np.ndarray:
    widths = [(0, 0)] * array.ndim
    widths[0] = (0, bucket.batch - array.shape[0])
    axis = index.sequence_axes.get(name)
    if axis is not None and bucket.sequence is not None:
        widths[axis] = (0, bucket.sequence - array.shape[axis])
    if not any(after for _, after in widths):
        return np.ascontiguousarray(array)
    return np.pad(array, widths, constant_values=index.pad_values.get(name, 0))


def _cut(index: TvmIndex, name: str, array: np.ndarray, rows: int, sequence: int | None) -> np.ndarray:
    if array.ndim == 0:
        return array
    array = array[:rows]
    axis = index.output_sequence_axes.get(name)
    if axis is not None and sequence is not None:
        array = np.take(array, np.arange(sequence), axis=axis)
    return array
