"""`Session.run` checks what it is given before any backend sees it: one InputError per bad input,
on every backend (TVM's gather reads out of bounds on a bad token or type id: the process crashed)."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from edgekiln.runtime import InputError, load
from edgekiln.runtime.cpus import available_cpus

NAMES = ("input_ids", "attention_mask", "token_type_ids")


def feeds(batch: int = 2, length: int = 8) -> dict[str, np.ndarray]:
    """Valid feeds: the tiny BERT's vocab.txt has 98 lines (ids 0..97)."""
    rng = np.random.default_rng(batch * 100 + length)
    return {
        "input_ids": rng.integers(5, 98, (batch, length)),
        "attention_mask": np.ones((batch, length), np.int64),
        "token_type_ids": np.zeros((batch, length), np.int64),
    }


def changed(**arrays) -> dict:
    return {**feeds(), **arrays}


BAD = {
    "sequence longer than the model's maximum": (feeds(1, 65), "sequence length 65; this model takes at most 64"),
    "a token id at the vocabulary size": (
        changed(input_ids=np.full((2, 8), 98)),
        r"token ids 98\.\.98; allowed 0\.\.97",
    ),
    "a negative token id": (changed(input_ids=np.full((2, 8), -1)), r"token ids -1\.\.-1"),
    "an attention mask of 2": (changed(attention_mask=np.full((2, 8), 2)), r"attention_mask values 2\.\.2"),
    "a token type beyond the type vocabulary": (
        changed(token_type_ids=np.full((2, 8), 2)),
        r"type_ids values 2\.\.2; allowed 0\.\.1",
    ),
    "strings of digits": (changed(input_ids=np.full((2, 8), "7")), "dtype <U1; it takes numbers"),
    "objects": (changed(input_ids=np.full((2, 8), 7, dtype=object)), "dtype object"),
    "non-integral floats": (changed(input_ids=np.full((2, 8), 7.5)), "non-integral values"),
    "NaN": (changed(input_ids=np.full((2, 8), np.nan)), "non-integral values"),
    "huge floats": (changed(input_ids=np.full((2, 8), 1e30)), "do not fit"),
    "batch sizes that disagree": (changed(attention_mask=np.ones((3, 8), np.int64)), "disagree on the batch size"),
    "sequence lengths that disagree": (
        changed(token_type_ids=np.zeros((2, 9), np.int64)),
        "disagree on the sequence size",
    ),
    "an empty batch": (feeds(0, 8), "empty on axis 0"),
    "ragged lists": (changed(input_ids=[[5, 6, 7], [5, 6]]), "not a rectangular array"),
    "a wrong rank": (changed(input_ids=np.ones(8, np.int64)), "1 dimensions, expected 2"),
    "a missing input": ({"input_ids": feeds()["input_ids"]}, "missing"),
    "not a mapping": ([1, 2, 3], "feeds must be a mapping"),
}


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "tvm"])
def test_each_bad_input_is_one_input_error_on_every_backend(backend, backend_artifacts):
    if backend not in backend_artifacts:
        pytest.skip(f"the {backend} extra is not installed")
    session = load(backend_artifacts[backend])
    assert (session.manifest.tokenizer.vocab_size, session.manifest.tokenizer.type_vocab_size) == (98, 2)
    for case, (given, message) in BAD.items():
        if backend == "tvm" and case.startswith("sequence longer"):
            given = feeds(1, 17)  # the TVM artifact's longest bucket is 16
            message = "sequence length 17; this model takes at most 16"
        with pytest.raises(InputError, match=message):
            session.run(given)
    session.run(feeds(2, 8))  # still usable


def test_whole_floats_and_narrower_ints_give_the_int64_result(artifacts):
    session = load(artifacts["sequence"])
    want = session.run(feeds())["logits"]
    as_floats = {name: array.astype(np.float32) for name, array in feeds().items()}
    as_int32 = {name: array.astype(np.int32) for name, array in feeds().items()}
    for given in (as_floats, as_int32):
        np.testing.assert_allclose(session.run(given)["logits"], want, rtol=0, atol=1e-6)


def test_thread_counts_are_capped_at_the_cpu_count_and_must_be_positive(artifacts):
    cores = available_cpus()
    with pytest.warns(UserWarning, match=f"more than the {cores} CPUs this process may use"):
        session = load(artifacts["sequence"], threads=10**6)
    assert session.threads == cores
    assert load(artifacts["sequence"], threads=np.int64(1)).threads == 1
    for bad in (0, -3, True, "4", 2.5):
        with pytest.raises(InputError, match="threads must be a positive integer"):
            load(artifacts["sequence"], threads=bad)


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2, reason="needs 2 CPUs")
def test_threads_follow_the_cpus_the_process_may_use(artifacts):
    """A process limited to one CPU (taskset, a cpuset) runs one thread, not one per machine core."""
    code = (
        "import os, warnings; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from edgekiln.runtime import load; "
        "from edgekiln.runtime.cpus import available_cpus; "
        "warnings.simplefilter('error'); "
        f"s = load({str(artifacts['sequence'])!r}); print(available_cpus(), s.threads)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["1", "1"]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2, reason="needs 2 CPUs")
def test_no_backend_pins_the_calling_thread(backend_artifacts):
    """TVM's thread pool pinned the thread that configured it to core 0 (every process that ran a TVM
    artifact, whatever else it did, then ran on one core); OpenVINO pins its own by default."""
    for backend, path in backend_artifacts.items():
        code = (
            "import os; os.sched_setaffinity(0, range(os.cpu_count())); before = os.sched_getaffinity(0); "
            "from edgekiln.runtime import load; "
            f"s = load({str(path)!r}, threads=1); s.predict(['a film']); "
            "print(before == os.sched_getaffinity(0))"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout.split()[-1] == "True", f"{backend} pinned the calling thread"
