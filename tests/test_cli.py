"""The command line: happy paths, and every bad input ending as one line with exit code 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgekiln.cli.main import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("edgekiln: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def out_dir(tmp_path) -> Path:
    return tmp_path / "out"


def test_folder_that_is_not_a_model(capsys, tmp_path, out_dir):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "compile", str(tmp_path / "empty"), "-o", str(out_dir))
    assert_one_line_error(code, err, "not a Hugging Face model folder", "config.json")
    assert not out_dir.exists()


def test_missing_tokenizer(capsys, bert_folders, tmp_path, out_dir):
    folder = tmp_path / "no-tokenizer"
    shutil.copytree(bert_folders["sequence"], folder)
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"):
        (folder / name).unlink(missing_ok=True)
    code, _, err = run_cli(capsys, "compile", str(folder), "-o", str(out_dir))
    assert_one_line_error(code, err, "has no tokenizer")


def test_hub_id_while_offline(capsys, out_dir):
    code, _, err = run_cli(capsys, "compile", "sentence-transformers/all-MiniLM-L6-v2", "-o", str(out_dir))
    assert_one_line_error(code, err, "never downloads", "huggingface-cli download")
    code, _, err = run_cli(capsys, "compile", "models/missing.onnx", "-o", str(out_dir))  # a file's path, not an id
    assert_one_line_error(code, err, "model path models/missing.onnx does not exist")


def test_unknown_target(capsys, bert_folders, out_dir):
    code, _, err = run_cli(capsys, "compile", str(bert_folders["sequence"]), "--target", "pi9", "-o", str(out_dir))
    assert_one_line_error(code, err, "unknown target 'pi9'")


def test_unknown_profile_key(capsys, bert_folders, tmp_path, out_dir):
    from edgekiln.targets.registry import builtin_profile_dir

    profile = tmp_path / "mine.toml"
    profile.write_text("turbo = true\n" + (builtin_profile_dir() / "x86-64-avx2.toml").read_text())
    code, _, err = run_cli(
        capsys, "compile", str(bert_folders["sequence"]), "--target", str(profile), "-o", str(out_dir)
    )
    assert_one_line_error(code, err, "unknown key `turbo`")


def test_corrupt_onnx(capsys, tmp_path, out_dir):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf" * 3)
    code, _, err = run_cli(capsys, "compile", str(bad), "-o", str(out_dir))
    assert_one_line_error(code, err, "model.onnx is not a")
    assert not out_dir.exists()


def test_unknown_backend(capsys, bert_folders, out_dir):
    code, _, err = run_cli(capsys, "compile", str(bert_folders["sequence"]), "--backend", "tflite", "-o", str(out_dir))
    assert_one_line_error(code, err, "unknown backend 'tflite'")


def test_existing_output_needs_force(capsys, bert_folders, artifacts, tmp_path):
    target = tmp_path / "existing"
    shutil.copytree(artifacts["sequence"], target)
    code, _, err = run_cli(capsys, "compile", str(bert_folders["encoder"]), "-o", str(target))
    assert_one_line_error(code, err, "already exists", "--force")
    code, out, err = run_cli(capsys, "compile", str(bert_folders["encoder"]), "-o", str(target), "--force")
    assert code == 0, err
    assert json.loads((target / "manifest.json").read_text())["task"] == "sentence-embedding"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing"]  # no staging folders left


def test_force_never_replaces_a_folder_that_is_not_an_artifact(capsys, bert_folders, tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    code, _, err = run_cli(capsys, "compile", str(bert_folders["sequence"]), "-o", str(precious), "--force")
    assert_one_line_error(code, err, "not an edgekiln artifact")
    assert (precious / "thesis.tex").read_text() == "years of work"


def test_tampered_artifact_and_newer_schema(capsys, artifacts, tmp_path):
    copy = tmp_path / "a"
    shutil.copytree(artifacts["sequence"], copy)
    (copy / "tokenizer.json").write_text((copy / "tokenizer.json").read_text().replace("[UNK]", "[UNX]"))
    code, _, err = run_cli(capsys, "run", str(copy), "hello")
    assert_one_line_error(code, err, "tokenizer.json does not match its manifest hash")
    shutil.rmtree(copy)
    shutil.copytree(artifacts["sequence"], copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run_cli(capsys, "run", str(copy), "hello")
    assert_one_line_error(code, err, "schema version 99 is newer")


def test_bad_flag_values_exit_2(capsys, artifacts):
    with pytest.raises(SystemExit) as stop:
        main(["bench", str(artifacts["sequence"]), "--batch", "0"])
    assert stop.value.code == 2
    assert "expected positive integers" in capsys.readouterr().err


def test_run_prints_predictions(capsys, artifacts):
    code, out, _ = run_cli(capsys, "run", str(artifacts["sequence"]), "i love it", "i hate it", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [row["text"] for row in rows] == ["i love it", "i hate it"]
    assert all(row["label"] in ("negative", "positive") and 0 <= row["score"] <= 1 for row in rows)
    code, out, _ = run_cli(capsys, "run", str(artifacts["token"]), "john visited paris")
    assert code == 0 and out.startswith("john/")
    code, out, _ = run_cli(capsys, "run", str(artifacts["encoder"]), "a sentence", "--json")
    assert code == 0 and len(json.loads(out)[0]["embedding"]) == 32
    long = " ".join(["love"] * 100)  # past the tiny model's 64 tokens
    code, out, err = run_cli(capsys, "run", str(artifacts["sequence"]), "i love it", long, "--batch-size", "1")
    assert code == 0 and len(out.splitlines()) == 2
    assert err == "note: text 2 is longer than the model's 64 tokens: only its start was read\n"
    code, out, err = run_cli(capsys, "run", str(artifacts["sequence"]), *[long] * 12, "--batch-size", "5")
    assert code == 0 and len(out.splitlines()) == 12 and err.count("note: text ") == 10
    assert err.endswith("note: 12 texts in all were longer than the model's input (the first 10 named above)\n")


def test_inspect_and_targets(capsys, artifacts):
    code, out, _ = run_cli(capsys, "inspect", str(artifacts["token"]))
    assert code == 0
    for fragment in ("token-classification", "onnxruntime", "x86-64-avx2", "input_ids", "export_onnx", "B-person"):
        assert fragment in out
    code, out, _ = run_cli(capsys, "targets")
    assert code == 0 and "arm64-cortex-a76" in out and "jetson-orin" in out
    code, _, err = run_cli(capsys, "inspect", "missing.onnx")
    assert code == 2 and "ONNX file missing.onnx does not exist" in err


def test_bench_json_and_report(capsys, artifacts, bert_folders, tmp_path):
    artifact = tmp_path / "bench-me"
    shutil.copytree(artifacts["sequence"], artifact)
    out_json = tmp_path / "bench.json"
    code, out, err = run_cli(
        capsys,
        "bench",
        str(artifact),
        "--batch",
        "1,2",
        "--seq",
        "8,16",
        "--runs",
        "3",
        "--warmup",
        "1",
        "--against",
        str(bert_folders["sequence"]),
        "--json",
        str(out_json),
    )
    assert code == 0, err
    report = json.loads(out_json.read_text())
    assert [(p["batch"], p["seq"]) for p in report["points"]] == [(1, 8), (1, 16), (2, 8), (2, 16)]
    for point in report["points"]:
        for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput", "peak_rss_mb", "speedup_p50"):
            assert point[key] > 0, key
        assert point["p50_ms"] <= point["p90_ms"] <= point["p99_ms"]
        assert point["speedup_p50"] == pytest.approx(point["against"]["p50_ms"] / point["p50_ms"], rel=0.01)
    assert report["load_seconds"] > 0 and report["against"]["name"] == "pytorch"
    assert "speed-up" in out
    html = (artifact / "reports" / "report.html").read_text()
    assert "Latency benchmark" in html and "<svg" in html
    assert main(["run", str(artifact), "still loads"]) == 0  # reports are not part of the hashed files


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--profile", "--against", "x"], "--against applies to latency runs only"),
        (["--profile", "--warmup", "2", "--seconds", "1"], "--seconds and --warmup apply to latency runs only"),
        (["--against", "no-such-model"], "--against no-such-model does not exist"),
        (["--json", "/no-such-folder/bench.json"], "cannot write /no-such-folder/bench.json"),
    ],
)
def test_bench_refuses_conflicting_or_bad_flags_before_measuring(capsys, artifacts, monkeypatch, flags, message):
    import edgekiln.runtime.bench as bench

    monkeypatch.setattr(bench, "measure", lambda *a, **k: pytest.fail("measured before refusing"))
    code, _, err = run_cli(capsys, "bench", str(artifacts["sequence"]), "--no-save", *flags)
    assert code == 2 and message in err and err.count("\n") == 1


def test_bench_takes_a_short_models_longest_sequence_by_default(capsys, artifacts):
    """The tiny model reads 64 tokens at most: bench measures 64 rather than failing at its default 128."""
    code, out, err = run_cli(capsys, "bench", str(artifacts["sequence"]), "--runs", "2", "--no-save")
    assert code == 0, err
    assert out.splitlines()[1].split()[:2] == ["1", "64"]
    with pytest.raises(SystemExit):
        main(["bench", str(artifacts["sequence"]), "--batch", "1,,2"])
    assert "found '1,,2'" in capsys.readouterr().err


def test_bench_against_loads_torch_only_after_the_artifact_is_measured(artifacts, bert_folders):
    """The artifact's peak memory must not count PyTorch (torch alone is ~190 MB of resident memory)."""
    script = f"""
import sys
import edgekiln.runtime.bench as bench
from edgekiln.cli.artifact_commands import run_bench
seen, measure = [], bench.measure
def spy(runner, *args):
    seen.append("torch" in sys.modules)
    return measure(runner, *args)
bench.measure = spy
from pathlib import Path
run_bench(Path({str(artifacts["sequence"])!r}), bench.BenchConfig(sequences=(8,), runs=1, warmup=0),
          threads=1, against={str(bert_folders["sequence"])!r})
print(seen)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[False, True]"  # the artifact first, without torch


def test_entry_point_error_has_no_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "edgekiln.cli.main", "run", str(tmp_path), "x"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "not an edgekiln artifact" in done.stderr


def test_library_deprecation_notices_are_not_shown_as_edgekiln_warnings(capsys):
    import warnings

    from edgekiln.cli.main import _one_line_warnings

    with _one_line_warnings(), warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("`is_gradient_checkpointing` is deprecated", FutureWarning, stacklevel=1)
        warnings.warn("old api", DeprecationWarning, stacklevel=1)
        warnings.warn("--threads 9 is more than this machine's 2 CPUs", UserWarning, stacklevel=1)
    assert capsys.readouterr().err == "edgekiln: warning: --threads 9 is more than this machine's 2 CPUs\n"


def test_version(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out == f"edgekiln {version('edgekiln')}\n"


def test_bench_against_another_model_is_refused(capsys, artifacts, bert_folders, tmp_path):
    code, _, err = run_cli(
        capsys, "bench", str(artifacts["sequence"]), "--no-save", "--runs", "2", "--against", str(bert_folders["token"])
    )
    assert_one_line_error(code, err, "is a token-classification model; the artifact does text-classification")
    embedder = tmp_path / "embedder"  # a classifier folder compiled with --task: benched against as built
    flags = ["compile", str(bert_folders["sequence"]), "--task", "sentence-embedding", "-o", str(embedder)]
    assert main([*flags, "--target", "x86-64-avx2"]) == 0
    code, out, err = run_cli(
        capsys, "bench", str(embedder), "--no-save", "--runs", "2", "--against", str(bert_folders["sequence"])
    )
    assert code == 0 and "speed-up" in out, err


def test_a_misspelt_flag_is_reported_by_its_command_with_the_closest_one(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["compile", "model", "--taget", "host", "-o", "out"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and err.startswith("usage: edgekiln compile")
    assert "edgekiln compile: error: unrecognized arguments: --taget host (did you mean --target?)" in err
    for argv, expected in (
        (["compile", "m", "--tagret", "host", "--quantise", "static"], "(did you mean --target? --quantize?)"),
        (["--debg", "targets"], "edgekiln: error: unrecognized arguments: --debg (did you mean --debug?)"),
        (["bnech", "art"], "edgekiln: error: unknown command 'bnech' (did you mean bench?)"),
    ):
        with pytest.raises(SystemExit):
            main(argv)
        assert expected in capsys.readouterr().err
