"""A normal (non-editable) install works: the wheel maps the folders to edgekiln.* and ships the profiles."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# One worker for the module: the wheel fixture builds in the checkout's build/ folder, and two xdist
# workers building it at once collide there ("Directory not empty: 'edgekiln'").
pytestmark = pytest.mark.xdist_group("packaging-wheel")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if done.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{done.stderr[-2000:]}")
    return next(out.glob("edgekiln-*.whl"))


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "edgekiln/compiler/api.py",
        "edgekiln/runtime/session.py",
        "edgekiln/cli/main.py",
        "edgekiln/targets/schema.py",
        "edgekiln/targets/profiles/arm64-cortex-a72.toml",
    ):
        assert expected in names, expected
    assert not any(name.startswith(("tests/", "benchmarks/")) for name in names)
    for folder in ("compiler", "runtime", "targets", "cli"):  # every subpackage of the checkout is shipped
        for init in (ROOT / folder).rglob("__init__.py"):
            shipped = f"edgekiln/{init.relative_to(ROOT).as_posix()}"
            assert shipped in names, f"{shipped} is missing from the wheel (add it to pyproject's packages)"


def test_installed_wheel_runs_an_artifact(wheel, artifacts, tmp_path):
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    script = (
        "import edgekiln.runtime as rt, edgekiln.targets as t, sys\n"
        "assert rt.__file__.startswith(sys.argv[1]), rt.__file__\n"
        "assert 'arm64-cortex-a76' in t.profile_names()\n"
        "print(rt.load(sys.argv[2]).predict(['i love it'])[0].label)\n"
    )
    # -S: no .pth files, so the editable install of this checkout cannot shadow the wheel.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(tmp_path / "site"), sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]
        ),
    }
    done = subprocess.run(
        [sys.executable, "-S", "-c", script, str(tmp_path / "site"), str(artifacts["sequence"])],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() in ("negative", "positive")
