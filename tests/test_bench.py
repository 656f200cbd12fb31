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


def test_a_fixed_batch_is_the_one_benched_and_others_are_refused(tmp_path, capsys):
    """A model compiled with batch 4 fixed ran batch 4 under `--batch 1` (and `--batch 8` ran 4 while
    reporting 8: its items/s were off by the ratio); `--seq` on inputs without a sequence axis was ignored."""
    from .test_any_onnx import T, _compile, _save, _weights, h
    from .test_cli import assert_one_line_error, run_cli

    model = _save(
        tmp_path / "lin.onnx",
        [h.make_node("MatMul", ["x", "w"], ["y"])],
        [h.make_tensor_value_info("x", T.FLOAT, [4, 16])],
        [h.make_tensor_value_info("y", T.FLOAT, [4, 5])],
        [_weights("w", (16, 5))],
    )
    artifact = _compile(model, tmp_path / "art", "onnxruntime").path
    code, out, err = run_cli(
        capsys, "bench", str(artifact), "--runs", "3", "--no-save", "--json", str(tmp_path / "b.json")
    )
    assert code == 0, err
    point = __import__("json").loads((tmp_path / "b.json").read_text())["points"][0]
    assert point["batch"] == 4 and point["throughput"] == pytest.approx(4000 / point["mean_ms"], rel=0.02)
    code, _, err = run_cli(capsys, "bench", str(artifact), "--batch", "8", "--no-save")
    assert_one_line_error(code, err, "--batch 8: this artifact takes batch 4 only", "--batch 4")
    code, _, err = run_cli(capsys, "bench", str(artifact), "--seq", "64", "--no-save")
    assert_one_line_error(code, err, "have no sequence axis", "drop --seq")
