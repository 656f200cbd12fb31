import numpy as np
import pytest

from edgekiln.runtime import InputError, load
from edgekiln.runtime.bench import BenchConfig, benchmark, feeds_for, format_table


def test_bench_config_validates():
    with pytest.raises(InputError, match="batch sizes must be positive"):
        BenchConfig(batches=(0,))
    with pytest.raises(InputError, match="runs >= 1"):
        BenchConfig(runs=0)
    with pytest.raises(InputError, match="time budget"):
        BenchConfig(seconds=-1)


def test_synthetic_feeds_are_full_length_and_in_vocabulary(artifacts):
    session = load(artifacts["sequence"])
    feeds = feeds_for(session, 3, 20, np.random.default_rng(0))
    assert feeds["input_ids"].shape == (3, 20) and feeds["attention_mask"].all()
    assert feeds["input_ids"].max() < session.encoder.vocab_size()
    with pytest.raises(InputError, match="exceeds the artifact's maximum 64"):
        feeds_for(session, 1, 65, np.random.default_rng(0))


def test_time_budget_and_against_runner(artifacts):
    session = load(artifacts["sequence"])
    calls = []
    report = benchmark(
        session,
        BenchConfig(sequences=(8,), runs=2, warmup=0, seconds=0.05),
        load_seconds=0.1,
        against=("other", lambda: lambda feeds: calls.append(feeds["input_ids"].shape)),
    )
    point = report["points"][0]
    assert point["runs"] >= 2 and point["against"]["runs"] >= 2
    assert calls[0] == (1, 8)
    assert "other p50" in format_table(report)
