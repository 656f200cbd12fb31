"""The runtime's fixed-shape dispatch, with a fake runner standing in for compiled libraries."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.runtime import InputError
from edgekiln.runtime.backends.buckets import pick_bucket, run_bucketed
from edgekiln.runtime.backends.tvm_index import Bucket, TvmIndex


def index(batches=(1, 4), sequences=(8, 16)) -> TvmIndex:
    buckets = tuple(Bucket(batch=b, sequence=s, library=f"b{b}s{s}.so", params=()) for s in sequences for b in batches)
    return TvmIndex(
        arch="x86_64",
        device="cpu",
        target={"kind": "llvm"},
        inputs=("ids", "mask"),
        sequence_axes={"ids": 1, "mask": 1},
        pad_values={"ids": 7, "mask": 0},
        output_sequence_axes={"tags": 1},
        buckets=buckets,
    )


def test_pick_bucket_prefers_the_shortest_length_then_the_smallest_batch():
    idx = index()
    assert (pick_bucket(idx, 1, 3).batch, pick_bucket(idx, 1, 3).sequence) == (1, 8)
    assert (pick_bucket(idx, 2, 9).batch, pick_bucket(idx, 2, 9).sequence) == (4, 16)
    assert pick_bucket(idx, 9, 16).batch == 4  # larger batches run in chunks of the largest bucket
    with pytest.raises(InputError, match="exceeds the longest compiled bucket"):
        pick_bucket(idx, 1, 17)


def test_padding_and_cutting_are_invisible_to_the_caller():
    seen = []

    def runner(bucket, arrays):
        ids, mask = arrays
        seen.append((bucket.batch, bucket.sequence, ids.shape, int(ids[-1, -1]), int(mask[-1, -1])))
        return [ids.astype(np.float32)[..., None] * 2, ids.sum(axis=1, keepdims=True).astype(np.float32)]

    ids = np.arange(6 * 5).reshape(6, 5)
    out = run_bucketed(index(), {"ids": ids, "mask": np.ones_like(ids)}, ["tags", "pooled"], runner)
    assert seen[0][:3] == (4, 8, (4, 8)) and seen[0][3:] == (7, 0), "pads with the index's pad values"
    assert [s[:2] for s in seen] == [(4, 8), (4, 8)], "6 rows: a chunk of 4, then 2 padded to 4"
    np.testing.assert_array_equal(out["tags"][..., 0], ids * 2)
    assert out["pooled"].shape == (6, 1)
