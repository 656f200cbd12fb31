"""One session shared by 8 threads, 50 calls each of varying batch and sequence length: every
output equals what the same session computes for that call alone, on every backend."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from edgekiln.runtime import load
from edgekiln.runtime.backends.pool import Pool

THREADS = 8
CALLS = 50
ATOL = 1e-5  # same kernels on the same shapes; a mixed-up request is off by far more


def requests(longest: int) -> list[list[dict[str, np.ndarray]]]:
    """THREADS lists of CALLS feeds: batch 1-4, sequence 1-`longest`, some rows padded."""
    rng = np.random.default_rng(7)
    per_thread = []
    for _ in range(THREADS):
        calls = []
        for _ in range(CALLS):
            batch, length = int(rng.integers(1, 5)), int(rng.integers(1, longest + 1))
            mask = np.ones((batch, length), np.int64)
            mask[0, int(rng.integers(1, length + 1)) :] = 0
            calls.append(
                {
                    "input_ids": rng.integers(5, 98, (batch, length)),
                    "attention_mask": mask,
                    "token_type_ids": np.zeros((batch, length), np.int64),
                }
            )
        per_thread.append(calls)
    return per_thread


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "tvm"])
def test_a_session_shared_by_8_threads_gives_every_caller_its_own_result(backend, backend_artifacts):
    if backend not in backend_artifacts:
        pytest.skip(f"the {backend} extra is not installed")
    session = load(backend_artifacts[backend], threads=1)
    work = requests(session.manifest.tokenizer.max_length)
    alone = [[session.run(feeds) for feeds in calls] for calls in work]
    start = threading.Barrier(THREADS)

    def worker(calls):
        start.wait()
        return [session.run(feeds) for feeds in calls]

    with ThreadPoolExecutor(THREADS) as pool:
        shared = list(pool.map(worker, work))
    for thread, (got_calls, want_calls) in enumerate(zip(shared, alone)):
        for call, (got, want) in enumerate(zip(got_calls, want_calls)):
            for name in want:
                assert got[name].shape == want[name].shape, f"thread {thread} call {call}: {name} shape"
                np.testing.assert_allclose(
                    got[name], want[name], rtol=0, atol=ATOL, err_msg=f"{backend}: thread {thread} call {call}: {name}"
                )


def test_the_pool_never_hands_one_item_to_two_callers_and_respects_its_limit():
    counter = iter(range(1000))
    pool = Pool(lambda: next(counter), limit=3)
    guard = threading.Lock()
    held: set[int] = set()
    most = [0]
    clashes = []

    def use(_):
        with pool.take() as item:
            with guard:
                if item in held:
                    clashes.append(item)
                held.add(item)
                most[0] = max(most[0], len(held))
            for _ in range(200):  # hold it a little, without sleeping
                threading.current_thread()
            with guard:
                held.discard(item)

    with ThreadPoolExecutor(8) as executor:
        list(executor.map(use, range(400)))
    assert clashes == [] and most[0] <= 3 and pool.created <= 3
