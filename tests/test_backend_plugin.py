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


FAULTY = """
import shutil

import numpy as np

from edgekiln.runtime.backends.spec import BackendSpec


class Session:
    def __init__(self, path, outputs, mode):
        import onnxruntime as ort

        self.session, self.outputs, self.mode = ort.InferenceSession(str(path)), outputs, mode

    def run(self, feeds):
        got = dict(zip(self.outputs, self.session.run(self.outputs, feeds)))
        if self.mode == "wrong":
            return {name: np.full_like(value, 7.0) for name, value in got.items()}
        if self.mode == "badret":
            return {name: value[:1].astype(np.float64) for name, value in got.items()}
        if self.mode == "runboom":
            raise RuntimeError("NPU timed out")
        return got


def opener(mode):
    def open_session(folder, manifest, options):
        if mode == "openboom":
            raise RuntimeError("cannot open device /dev/npu0")
        return Session(folder / manifest.model_file, [spec.name for spec in manifest.outputs], mode)

    return open_session


def lowering(mode):
    def make(context):
        from edgekiln.compiler.passes.base import Pass, PassConfig

        class Lower(Pass):
            name = f"lower_{mode}"
            Config = PassConfig
            changes_model = False
            lowers_to = ("m.onnx",)

            def run(self, state, out_dir):
                if mode == "lowerboom":
                    raise ValueError("vendor SDK exploded")
                shutil.copyfile(state.model_path, out_dir / "m.onnx")
                return {}

        return Lower()

    return make


def spec(mode):
    return BackendSpec(
        name=mode, description="faulty", runtime=f"faulty:{mode}_open", lowering=f"faulty:{mode}_lower"
    )


MODES = ("wrong", "badret", "openboom", "lowerboom", "runboom")
for _mode in MODES:
    globals()[f"{_mode}_open"], globals()[f"{_mode}_lower"] = opener(_mode), lowering(_mode)
WRONG, BADRET, OPENBOOM, LOWERBOOM, RUNBOOM = (spec(mode) for mode in MODES)
"""


@pytest.fixture(scope="module")
def faulty_plugins(tmp_path_factory) -> Path:
    """Plugins as pip would lay them out (a module and its dist-info): four faulty backends, one that
    fails at import, one that takes the built-in onnxruntime's name."""
    site = tmp_path_factory.mktemp("faulty-site")
    (site / "faulty.py").write_text(FAULTY)
    (site / "brokenbk.py").write_text("raise ImportError('boom at import')\n")
    (site / "clashbk.py").write_text(
        "from edgekiln.runtime.backends.spec import BackendSpec\n"
        "SPEC = BackendSpec(name='onnxruntime', description='clash', runtime='clashbk:x')\n"
    )
    entries = {
        "faulty": "\n".join(
            f"{m} = faulty:{m.upper()}" for m in ("wrong", "badret", "openboom", "lowerboom", "runboom")
        ),
        "brokenbk": "brokenbk = brokenbk",
        "clashbk": "onnxruntime = clashbk",
    }
    for package, lines in entries.items():
        info = site / f"{package}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[edgekiln.backends]\n{lines}\n")
    return site


@pytest.mark.parametrize(
    ("backend", "message"),
    [
        ("wrong", "backend plugin 'wrong' computes other outputs than the model"),
        ("badret", "returned logits as float64 of shape [1, 2]"),
        ("openboom", "could not open"),
        ("lowerboom", "pass lower_lowerboom (plugin module faulty) failed: ValueError: vendor SDK exploded"),
        ("runboom", "backend plugin 'runboom' failed to run: RuntimeError: NPU timed out"),
    ],
)
def test_a_faulty_plugin_backend_is_named_and_writes_nothing(faulty_plugins, bert_folders, tmp_path, backend, message):
    out = tmp_path / "out"
    built = compile_with(faulty_plugins, bert_folders["sequence"], backend, out)
    assert built.returncode == 2, built.stderr
    error = [line for line in built.stderr.splitlines() if line.startswith("edgekiln: error")]
    assert len(error) == 1 and message in error[0] and "Traceback" not in built.stderr
    assert not out.exists() and not list(tmp_path.glob(".out.*"))


def test_a_broken_or_clashing_plugin_leaves_the_builtin_backends_working(faulty_plugins, artifacts):
    ran = edgekiln(faulty_plugins, "run", str(artifacts["sequence"]), "a fine film")
    assert ran.returncode == 0, ran.stderr
    assert "backend plugin 'brokenbk' (package brokenbk) failed to load: boom at import; it is ignored" in ran.stderr
    assert "(package clashbk) takes the name 'onnxruntime' of a built-in backend" in ran.stderr
    used = edgekiln(faulty_plugins, "run", str(artifacts["sequence"]), "x", "--json")
    assert used.returncode == 0
    asked = compile_with(faulty_plugins, Path("nowhere.onnx"), "brokenbk", Path("unused"))
    assert asked.returncode == 2 and "edgekiln: error: backend plugin 'brokenbk'" in asked.stderr


def test_a_preferred_backend_that_is_missing_is_told_from_one_set_aside(monkeypatch):
    from edgekiln.compiler.planning import _unavailable
    from edgekiln.runtime import backends
    from edgekiln.runtime.errors import BackendUnavailableError

    backends.backend_names()  # the registry loaded before the set-aside entry is added
    problem = BackendUnavailableError("backend plugin 'npu' (package npu-kit) failed to load: no driver", hint="x")
    monkeypatch.setitem(backends._BROKEN, "npu", problem)
    assert _unavailable(["onnxruntime", "npu", "ghost"]) == [
        problem.message,
        "'ghost': no backend by that name is installed here",
    ]
