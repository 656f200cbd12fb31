"""A third-party backend installed through the `edgekiln.backends` entry point alone (the test package
tests/plugins/edgekiln-toy-backend) is listed, compiles and runs, with no edit to edgekiln's files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = Path(__file__).parent / "plugins" / "edgekiln-toy-backend"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("toy-site")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(PLUGIN)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        pytest.fail(f"installing the toy plugin failed: {done.stderr[-2000:]}")
    return target


def edgekiln(plugin_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(plugin_path)}
    return subprocess.run(
        [sys.executable, "-m", "edgekiln.cli.main", *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture(scope="module")
def toy_artifact(plugin_path, bert_folders, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The tiny classifier compiled with --backend toy (once for both tests), and that compile's result."""
    out = tmp_path_factory.mktemp("toy") / "toy-artifact"
    built = compile_with(plugin_path, bert_folders["sequence"], "toy", out)
    return out, built


def compile_with(plugin_path: Path, model: Path, backend: str, out: Path) -> subprocess.CompletedProcess:
    return edgekiln(plugin_path, "compile", str(model), "--target", "x86-64-avx2", "--backend", backend, "-o", str(out))


def test_toy_backend_is_listed_compiles_and_runs(plugin_path, toy_artifact, bert_folders, tmp_path):
    listed = edgekiln(plugin_path, "targets")
    assert listed.returncode == 0, listed.stderr
    assert any(line.split()[:1] == ["toy"] for line in listed.stdout.splitlines()), listed.stdout
    out, built = toy_artifact
    assert built.returncode == 0, built.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backend"] == "toy" and manifest["model_file"] == "toy.onnx"
    assert [p["name"] for p in manifest["passes"]][-1] == "lower_toy"
    ran = edgekiln(plugin_path, "run", str(out), "i love it", "--json")
    assert ran.returncode == 0, ran.stderr
    reference = compile_with(plugin_path, bert_folders["sequence"], "onnxruntime", tmp_path / "ort")
    assert reference.returncode == 0, reference.stderr
    expected = edgekiln(plugin_path, "run", str(tmp_path / "ort"), "i love it", "--json")
    toy, ort = json.loads(ran.stdout), json.loads(expected.stdout)
    assert toy[0]["label"] == ort[0]["label"]
    assert toy[0]["score"] == pytest.approx(ort[0]["score"], abs=1e-5)


def test_without_the_plugin_the_artifact_names_what_is_missing(toy_artifact):
    out, built = toy_artifact
    assert built.returncode == 0
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    ran = subprocess.run(
        [sys.executable, "-m", "edgekiln.cli.main", "run", str(out), "hello"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert ran.returncode == 2 and "Traceback" not in ran.stderr
    assert "unknown backend 'toy'" in ran.stderr and "plugin" in ran.stderr
