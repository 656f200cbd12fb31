"""Target-profile plugins (`edgekiln.targets` entry points) that fail, take a built-in's name, or
declare a name other than their file's: each is named in a warning and the other profiles keep working."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgekiln.cli.main import main

PROFILE = (Path(__file__).parents[1] / "targets" / "profiles" / "x86-64-avx2.toml").read_text()


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("target-plugins")
    (root / "badtg.py").write_text("def profiles():\n    raise RuntimeError('targets boom')\n")
    folder = root / "tgprofiles"
    folder.mkdir()
    (folder / "x86-64-avx2.toml").write_text(PROFILE.replace('description = "', 'description = "HIJACKED '))
    (folder / "stem-a.toml").write_text(PROFILE.replace('name = "x86-64-avx2"', 'name = "other-name"'))
    (folder / "my-board.toml").write_text(PROFILE.replace('name = "x86-64-avx2"', 'name = "my-board"'))
    (root / "goodtg.py").write_text(f"def profiles():\n    return {str(folder)!r}\n")
    for package, line in (("badtg", "badtg = badtg:profiles"), ("goodtg", "goodtg = goodtg:profiles")):
        info = root / f"{package}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
        (info / "entry_points.txt").write_text(f"[edgekiln.targets]\n{line}\n")
    return root


def edgekiln(site: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "edgekiln.cli.main", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_faulty_target_plugins_are_named_and_the_rest_listed(site):
    assert 'name = "x86-64-avx2"' in PROFILE  # the replacements above change something
    listed = edgekiln(site, "targets")
    assert listed.returncode == 0, listed.stderr
    assert "target plugin 'badtg' (badtg:profiles) failed: targets boom; its profiles are ignored" in listed.stderr
    assert "its profile x86-64-avx2.toml takes the name of" in listed.stderr
    assert "stem-a.toml declares name = 'other-name', not 'stem-a'" in listed.stderr
    names = [line.split()[0] for line in listed.stdout.splitlines() if line and not line.startswith(" ")]
    assert "my-board" in names and "other-name" not in names and "HIJACKED" not in listed.stdout
    assert listed.stderr.count("targets boom") == 1  # once a process
    wrong = edgekiln(site, "compile", "nowhere.onnx", "--target", "stem-a", "-o", str(site / "out"))
    assert wrong.returncode == 2 and "declares name = 'other-name'" in wrong.stderr


def test_tune_db_import_of_a_binary_file_is_one_error(capsys, tmp_path):
    pytest.importorskip("tvm")
    junk = tmp_path / "records.db"
    junk.write_bytes(bytes(range(256)))
    assert main(["tune-db", "import", str(junk)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_a_profile_naming_no_installed_backend_says_so(tmp_path):
    from edgekiln.compiler import CompileError, compile

    profile = tmp_path / "my-pi.toml"
    profile.write_text(
        PROFILE.replace('name = "x86-64-avx2"', 'name = "my-pi"').replace(
            PROFILE[PROFILE.index("preferred_backends") :].splitlines()[0], 'preferred_backends = ["onnxruntme"]'
        )
    )
    with pytest.raises(CompileError, match="'onnxruntme': no backend by that name is installed here"):
        compile(tmp_path / "nowhere.onnx", str(profile), tmp_path / "out")
