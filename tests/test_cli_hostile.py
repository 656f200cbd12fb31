"""Hostile input to every command: exit 2 and one `edgekiln: error:` line for what the user can fix,
exit 3 and one line plus a log file for a bug, never a traceback; `run -` streams stdin."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgekiln.cli import artifact_commands, verify_command
from edgekiln.cli.main import main
from edgekiln.runtime import load

BAD = os.fsdecode(b"caf\xe9")  # Latin-1 bytes in a UTF-8 world: Python keeps them as a lone surrogate


@pytest.fixture(scope="module")
def artifact(bert_folders, tmp_path_factory) -> Path:
    from edgekiln.compiler import compile

    return compile(bert_folders["sequence"], "x86-64-avx2", tmp_path_factory.mktemp("hostile") / "art").path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile-data")
    files = {
        "good.tsv": "sentence\tlabel\n"
        + "".join(f"good movie {i}\tpositive\nbad film {i}\tnegative\n" for i in range(10)),
        "huge.tsv": "sentence\tlabel\nfine\tpositive\n" + "x" * 200_000 + "\tnegative\n",
        "huge.csv": 'sentence,label\nfine,positive\n"never closed,negative\n' + "more,positive\n" * 20_000,
        "a-file": "not a folder",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    return {name: root / name for name in files}


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _one_error(code: int, err: str, expected_code: int = 2, *fragments: str) -> str:
    assert code == expected_code, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("edgekiln: ")]
    assert len(lines) == 1, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def _commands(artifact: Path, model: Path, data: dict[str, Path], tmp_path: Path) -> dict[str, list[str]]:
    return {
        "run": ["run", str(artifact), "good"],
        "bench": ["bench", str(artifact), "--runs", "1", "--no-save"],
        "inspect": ["inspect", str(artifact)],
        "verify": ["verify", str(artifact)],
        "eval": ["eval", str(artifact), "--data", str(data["good.tsv"])],
        "finetune": [
            "finetune",
            str(model),
            "--task",
            "text-classification",
            "--data",
            str(data["good.tsv"]),
            "-o",
            str(tmp_path / "tuned"),
        ],
        "compile": ["compile", str(model), "--target", "x86-64-avx2", "-o", str(tmp_path / "out")],
        "targets": ["targets"],
    }


@pytest.mark.parametrize("command", ["run", "bench", "inspect", "verify", "eval", "finetune", "compile", "targets"])
def test_invalid_utf8_in_argv(capsys, artifact, bert_folders, data, tmp_path, command):
    argv = _commands(artifact, bert_folders["sequence"], data, tmp_path)[command] + [BAD]
    code, _, err = _cli(capsys, *argv)
    _one_error(code, err, 2, "is not valid UTF-8", r"b'caf\xe9'")


@pytest.mark.parametrize("batch", ["1", "32"])
def test_invalid_utf8_on_stdin(capsys, monkeypatch, artifact, batch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"good film\nna\xefve\n")))
    code, out, err = _cli(capsys, "run", str(artifact), "-", "--batch-size", batch)
    _one_error(code, err, 2, "stdin line 2 is not valid UTF-8 (byte 0xef")
    assert len(out.splitlines()) == (1 if batch == "1" else 0)  # what came before the bad line is printed


def test_empty_stdin(capsys, monkeypatch, artifact):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    code, _, err = _cli(capsys, "run", str(artifact), "-")
    _one_error(code, err, 2, "no texts on stdin")


@pytest.mark.parametrize("name", ["huge.tsv", "huge.csv"])
def test_a_field_over_128_kib(capsys, artifact, bert_folders, data, tmp_path, name):
    code, _, err = _cli(capsys, "eval", str(artifact), "--data", str(data[name]))
    _one_error(code, err, 2, f"{name}:", "field is longer than 128 KiB")
    code, _, err = _cli(
        capsys,
        "finetune",
        str(bert_folders["sequence"]),
        "--task",
        "text-classification",
        "--data",
        str(data[name]),
        "-o",
        str(tmp_path / "tuned"),
    )
    _one_error(code, err, 2, "field is longer than 128 KiB")
    code, _, err = _cli(
        capsys,
        "compile",
        str(bert_folders["sequence"]),
        "--target",
        "x86-64-avx2",
        "--quantize",
        "static",
        "--calibration",
        str(data[name]),
        "-o",
        str(tmp_path / "out"),
    )
    _one_error(code, err, 2, "field is longer than 128 KiB")


def test_output_under_a_file(capsys, artifact, bert_folders, data):
    under = data["a-file"] / "out"
    code, _, err = _cli(capsys, "compile", str(bert_folders["sequence"]), "--target", "x86-64-avx2", "-o", str(under))
    _one_error(code, err, 2, "a-file is a file, not a folder")
    code, _, err = _cli(
        capsys,
        "finetune",
        str(bert_folders["sequence"]),
        "--task",
        "text-classification",
        "--data",
        str(data["good.tsv"]),
        "-o",
        str(under / "deeper"),
    )
    _one_error(code, err, 2, "a-file is a file, not a folder")
    code, _, err = _cli(capsys, "eval", str(artifact), "--data", str(data["good.tsv"]), "--json", str(under))
    _one_error(code, err, 2, "cannot write", "--json")
    code, _, err = _cli(
        capsys, "bench", str(artifact), "--runs", "1", "--warmup", "0", "--seq", "8", "--no-save", "--json", str(under)
    )
    _one_error(code, err, 2, "cannot write")
    code, _, err = _cli(capsys, "run", str(under), "good")
    _one_error(code, err, 2, "does not exist")
    code, _, err = _cli(capsys, "run", str(data["a-file"]), "good")  # e.g. the .onnx file itself
    _one_error(code, err, 2, "a-file is a file, not an artifact folder", "edgekiln compile")


@pytest.mark.parametrize(
    "command, target",
    [
        ("run", (artifact_commands, "load")),
        ("bench", (artifact_commands, "load")),
        ("inspect", (artifact_commands, "read_manifest")),
        ("verify", (verify_command, "verify_artifact")),
        ("eval", ("edgekiln.compiler.evaluate", "evaluate")),
        ("finetune", ("edgekiln.compiler.finetune", "finetune")),
        ("compile", ("edgekiln.compiler.api", "compile")),
    ],
)
def test_an_unexpected_exception_is_one_line_and_a_log(
    capsys, monkeypatch, artifact, bert_folders, data, tmp_path, command, target
):
    def broken(*args, **kwargs):
        raise RuntimeError("an edgekiln bug\nwith a second line")

    module, name = target
    monkeypatch.setattr(module if not isinstance(module, str) else __import__(module, fromlist=[name]), name, broken)
    argv = _commands(artifact, bert_folders["sequence"], data, tmp_path)[command]
    code, _, err = _cli(capsys, *argv)
    line = _one_error(code, err, 3, f"internal error in `edgekiln {command}`: RuntimeError: an edgekiln bug")
    log = Path(line.split("traceback in ", 1)[1].split(";", 1)[0])
    text = log.read_text()
    assert "Traceback" in text and "with a second line" in text and "in broken" in text
    code, _, err = _cli(capsys, "--debug", *argv)
    assert code == 3 and "Traceback" in err and "in broken" in err


def test_user_errors_keep_exit_2_under_debug(capsys, tmp_path):
    code, _, err = _cli(capsys, "--debug", "inspect", str(tmp_path))
    _one_error(code, err, 2, "not an edgekiln artifact")


def test_a_closed_pipe_ends_quietly(artifact, tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("".join(f"good film {i}\n" for i in range(3000)))
    with open(texts, "rb") as stdin:
        child = subprocess.Popen(
            [sys.executable, "-m", "edgekiln.cli.main", "run", str(artifact), "-", "--batch-size", "4"],
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        first = child.stdout.readline()  # `| head -1`
        child.stdout.close()
        _, err = child.communicate(timeout=300)
    assert first.decode().endswith("good film 0\n")
    assert child.returncode == 141 and err.decode() == ""  # no traceback, no "Exception ignored"


def test_stdin_is_streamed_in_batches_with_the_one_by_one_results(capsys, monkeypatch, artifact):
    texts = [f"{'good' if i % 3 else 'bad'} movie {'very ' * (i % 7)}number {i}" for i in range(101)]
    session = load(artifact)
    alone = [session.predict([text])[0] for text in texts]
    for flags in ([], ["--json"]):
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("".join(t + "\n" for t in texts).encode())))
        code, out, err = _cli(capsys, "run", str(artifact), "-", "--batch-size", "7", *flags)
        assert code == 0, err
        if flags:
            items = json.loads(out)
            assert [item["text"] for item in items] == texts
            assert [item["label"] for item in items] == [p.label for p in alone]
            np.testing.assert_allclose([item["score"] for item in items], [p.score for p in alone], atol=1e-5)
        else:
            rows = [line.split("\t") for line in out.splitlines()]
            assert [row[2] for row in rows] == texts and [row[0] for row in rows] == [p.label for p in alone]
            np.testing.assert_allclose([float(row[1]) for row in rows], [p.score for p in alone], atol=1e-4)
    code, out, _ = _cli(capsys, "run", str(artifact), *texts[:3], "--json", "--batch-size", "2")
    expected = [
        {"text": t, **p.to_dict()} for t, p in zip(texts, session.predict(texts[:2]) + session.predict(texts[2:3]))
    ]
    assert code == 0 and out == json.dumps(expected, indent=2) + "\n"  # the same text as one json.dumps


def test_calibration_data_nothing_uses_is_refused(capsys, bert_folders, data, tmp_path):
    args = ["compile", str(bert_folders["sequence"]), "--target", "x86-64-avx2", "-o", str(tmp_path / "out")]
    code, _, err = _cli(capsys, *args, "--calibration", str(data["a-file"]))
    _one_error(code, err, 2, "--calibration is data for --quantize")
    assert not (tmp_path / "out").exists()
    from edgekiln.compiler import Recipe

    stored = Recipe.from_flags(calibration=str(data["a-file"])).save(tmp_path / "auto-winner.toml")  # as auto stores
    code, _, err = _cli(capsys, *args, "--recipe", str(stored))
    assert code == 0, err  # a recipe file's calibration is not the flag: it rebuilds
