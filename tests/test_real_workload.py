"""The interleaved measurement's real-workload mode (one item per call, in turn) and a smoke run of
benchmarks/real_workload.py on the tiny classifier: PyTorch eager, the artifact, and `edgekiln serve`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgekiln.runtime.interleave import measure, settle

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "real_workload.py"


def checking_runner(_name: str, expected: tuple[str, ...]):
    """Module-level (built in a spawned process): fails unless the calls bring `expected` in turn."""
    position = iter(range(10**6))

    def run(item):
        index = next(position) % len(expected)
        if item != expected[index]:
            raise AssertionError(f"call {index} got {item!r}, expected {expected[index]!r}")

    return run


def test_cycle_gives_every_runner_the_items_in_turn():
    items = ["a", "b", "c"]
    order = tuple(items)
    times = measure(checking_runner, {"one": order, "two": order}, items, rounds=2, per_round=4, cycle=True)
    assert {name: len(values) for name, values in times.items()} == {"one": 8, "two": 8}
    with pytest.raises(RuntimeError, match="runner wrong failed: AssertionError: call 1 got 'b'"):
        measure(checking_runner, {"wrong": ("a", "c", "b")}, items, rounds=1, per_round=2, cycle=True)
    with pytest.raises(RuntimeError, match="runner same failed"):  # without cycle every call gets the whole list
        measure(checking_runner, {"same": order}, items, rounds=1, per_round=2)


def _spin_until(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(1000))


def test_settle_waits_for_a_spinning_thread_to_stop():
    """A runner reports its round only once its process is idle: ONNX Runtime's worker keeps a core busy
    for about 40 ms after a call, and the next runner's round would run beside it."""
    stop = threading.Event()
    spinner = threading.Thread(target=_spin_until, args=(stop,))
    spinner.start()
    threading.Timer(0.3, stop.set).start()
    settle(limit=5.0)
    assert stop.is_set()  # it did not return while the thread was still spinning
    spinner.join()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="other processes' CPU clocks are Linux's")
def test_settle_waits_for_a_watched_process_too():
    """A serve client's round ends only once the server's workers have stopped spinning as well."""
    spin = "import time\nwhile time.process_time() < 0.6: pass\ntime.sleep(60)"  # 0.6 CPU-s, then idle
    child = subprocess.Popen([sys.executable, "-c", spin])
    try:
        settle(limit=30.0, others=(child.pid,))
        assert time.clock_gettime(((~child.pid) << 3) | 2) >= 0.6  # it waited out the whole spin
        started = time.perf_counter()
        settle(limit=30.0, others=(child.pid,))
        assert time.perf_counter() - started < 5.0  # an idle watched process lets it return at once
    finally:
        child.kill()
        child.wait()


def test_settle_gives_up_on_a_thread_that_never_stops():
    stop = threading.Event()
    spinner = threading.Thread(target=_spin_until, args=(stop,))
    spinner.start()
    try:
        started = time.perf_counter()
        settle(limit=0.2)
        assert spinner.is_alive() and time.perf_counter() - started < 5.0
    finally:
        stop.set()
        spinner.join()


def test_real_workload_script_runs_eager_artifact_and_serve(bert_folders, artifacts, tmp_path):
    pytest.importorskip("uvicorn")
    pytest.importorskip("starlette")
    data = tmp_path / "dev.tsv"
    data.write_text("sentence\tlabel\ni love this movie\tpositive\nthe plot was boring\tnegative\nnot good\tnegative\n")
    out = tmp_path / "figures.json"
    command = [sys.executable, str(SCRIPT), "--model", str(bert_folders["sequence"]), f"art={artifacts['sequence']}"]
    command += ["--serve", f"served={artifacts['sequence']}", "--data", str(data), "--rounds", "1", "--seq", "16"]
    command += ["--tensor-calls", "2", "--threads", "1", "--tokenizers", "--json", str(out)]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-2000:]
    figures = json.loads(out.read_text())
    assert set(figures["sentences"]) == {"pytorch-eager", "art", "serve:served", "tokenize: HF", "tokenize: edgekiln"}
    assert all(row["calls"] == 3 for row in figures["sentences"].values())  # one pass over the 3 sentences
    assert set(figures["tensors_1x16"]) == {"pytorch-eager", "art"}  # serve takes texts only
    assert figures["sentences"]["pytorch-eager"]["x_eager_p50"] == pytest.approx(1.0)
    accuracy = figures["accuracy"]
    # the artifact computes what the checkpoint does: same answers on the three sentences
    assert accuracy["art"] == pytest.approx(accuracy["pytorch-eager"]) == pytest.approx(accuracy["served"])
    assert "| serve:served |" in finished.stdout


def test_real_workload_script_skips_without_data(tmp_path):
    missing = tmp_path / "nowhere.tsv"
    finished = subprocess.run(
        [sys.executable, str(SCRIPT), "--data", str(missing)], capture_output=True, text=True, timeout=120
    )
    assert finished.returncode == 0 and f"skipped: no SST-2 validation data at {missing}" in finished.stdout
