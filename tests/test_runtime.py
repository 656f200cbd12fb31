"""The runtime's side of the contract: schema and hash checks, and no torch on the device."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgekiln.runtime import SCHEMA_VERSION, ArtifactError, BackendUnavailableError, load

from .artifact_tools import edit_manifest

RUNTIME_DIR = Path(__file__).resolve().parents[1] / "runtime"


@pytest.fixture
def artifact_copy(artifacts, tmp_path) -> Path:
    copy = tmp_path / "artifact"
    shutil.copytree(artifacts["sequence"], copy)
    return copy


def _edit_manifest(folder: Path, **changes) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.update(changes)
    path.write_text(json.dumps(manifest))


def test_tampered_model_file_is_refused(artifact_copy):
    with open(artifact_copy / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ArtifactError, match="model.onnx does not match its manifest hash"):
        load(artifact_copy)


def test_missing_file_is_refused(artifact_copy):
    (artifact_copy / "tokenizer.json").unlink()
    with pytest.raises(ArtifactError, match="missing tokenizer.json"):
        load(artifact_copy)


def test_newer_schema_asks_for_an_upgrade(artifact_copy):
    _edit_manifest(artifact_copy, schema_version=SCHEMA_VERSION + 1)
    with pytest.raises(ArtifactError, match="newer than this runtime supports.*upgrade edgekiln"):
        load(artifact_copy)


def test_unknown_manifest_key_is_refused(artifact_copy):
    _edit_manifest(artifact_copy, surprise=1)
    with pytest.raises(ArtifactError, match="field `surprise`"):
        load(artifact_copy)


def test_not_an_artifact(tmp_path):
    with pytest.raises(ArtifactError, match="not an edgekiln artifact"):
        load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="not valid JSON"):
        load(tmp_path)
    with pytest.raises(ArtifactError, match="does not exist"):
        load(tmp_path / "nope")


def test_path_outside_the_artifact_is_refused(artifact_copy):
    manifest = json.loads((artifact_copy / "manifest.json").read_text())
    manifest["files"]["../escape"] = "0" * 64
    (artifact_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="outside the artifact folder"):
        load(artifact_copy)


def test_cuda_artifact_without_a_gpu_fails_clearly(artifact_copy):
    edit_manifest(artifact_copy, lambda manifest: manifest["target"].update(accelerator="cuda"), reseal=True)
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this machine has CUDA onnxruntime")
    with pytest.raises(BackendUnavailableError, match="no CUDA provider"):
        load(artifact_copy)
    assert load(artifact_copy, device="cpu").predict(["fine on cpu"])[0].label


def test_running_an_artifact_imports_no_torch_or_transformers(artifacts):
    script = (
        "import sys, edgekiln.runtime as rt\n"
        f"s = rt.load({str(artifacts['sequence'])!r}); s.predict(['i love it'])\n"
        f"e = rt.load({str(artifacts['encoder'])!r}); e.predict(['i love it'])\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers', 'onnx')"
        " or m.startswith('edgekiln.compiler'))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", f"runtime imported: {done.stdout.strip()}"


def test_runtime_source_never_imports_the_compiler():
    pattern = re.compile(r"^\s*(from|import)\s+(edgekiln\.compiler|torch|transformers)\b", re.MULTILINE)
    offenders = [
        str(path.relative_to(RUNTIME_DIR)) for path in RUNTIME_DIR.rglob("*.py") if pattern.search(path.read_text())
    ]
    assert offenders == []
