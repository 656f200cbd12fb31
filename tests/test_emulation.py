"""aarch64 artifacts run on an emulated aarch64 machine (qemu-user + a Debian arm64 sysroot) and
match the reference outputs the build machine stored in them. `.ci/run` installs what it needs."""

from __future__ import annotations

import json

import pytest

from edgekiln.cli.main import main
from edgekiln.compiler import Recipe

from .emulation_marks import EMULATION

pytestmark = EMULATION


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["tvm", "onnxruntime"])
def test_aarch64_artifact_passes_under_emulation(backend, bert_folders, tmp_path, capsys):
    pytest.importorskip("tvm", reason="the tvm extra is not installed")
    from edgekiln.compiler import compile

    path = compile(
        bert_folders["token"],
        "arm64-cortex-a72",
        tmp_path / backend,
        recipe=Recipe.from_flags(backend=backend, sequence_buckets=(16, 32) if backend == "tvm" else None),
    ).path
    capsys.readouterr()
    assert main(["verify", str(path), "--emulate", "--json"]) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["machine"] == "aarch64", "the check must have run on the emulated machine"
    assert report["passed"] and report["max_abs_diff"] <= 1e-4, (
        f"emulated outputs differ from the host's by {report['max_abs_diff']:.3g}"
    )


@pytest.mark.slow
def test_an_image_artifact_checks_its_preprocessing_under_emulation(tmp_path, capsys):
    """The image decode and preprocessing (Pillow's resize on the device's CPU) is checked there too; it
    was skipped under --emulate, where the runtime had no Pillow."""
    from edgekiln.compiler import compile

    from .image_helpers import make_image_folder

    folder = make_image_folder(tmp_path / "vit", "vit")
    path = compile(folder, "arm64-cortex-a72", tmp_path / "art", recipe=Recipe.from_flags(backend="onnxruntime")).path
    capsys.readouterr()
    assert main(["verify", str(path), "--emulate", "--json"]) == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["machine"] == "aarch64" and report["passed"]
    assert "skipped" not in report["preprocess"] and report["preprocess"]["passed"], report["preprocess"]
