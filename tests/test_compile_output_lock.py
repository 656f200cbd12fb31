"""compile() holds the output lock for the whole build and never replaces a folder that appeared."""

from __future__ import annotations

import pytest

from edgekiln.compiler import compile
from edgekiln.compiler.errors import CompileError
from edgekiln.compiler.folders import output_lock


def test_a_second_compile_to_a_locked_output_fails_at_once(bert_folders, tmp_path):
    target = tmp_path / "out"
    with output_lock(target), pytest.raises(CompileError, match="another edgekiln build is writing"):
        compile(bert_folders["sequence"], "x86-64-avx2", target)
    assert not target.exists()


def test_a_folder_that_appears_during_the_compile_is_kept(bert_folders, tmp_path):
    target = tmp_path / "out"

    def appear(message: str) -> None:
        if message.startswith("verify_fidelity done") and not target.exists():
            target.mkdir()
            (target / "thesis.tex").write_text("years of work")

    with pytest.raises(CompileError, match="appeared while this build was running.*new result is at") as info:
        compile(bert_folders["sequence"], "x86-64-avx2", target, progress=appear)
    assert (target / "thesis.tex").read_text() == "years of work"
    kept = info.value.message.rsplit("new result is at ", 1)[1].split(";")[0]
    assert (tmp_path / kept.rsplit("/", 1)[1] / "manifest.json").is_file()


def test_a_killed_builds_staging_folder_is_removed_by_the_next_compile(bert_folders, tmp_path):
    """A build killed outright (SIGKILL, power) leaves `.OUT.build-*` beside the output; the next compile
    to that output holds the lock, so any such folder is stale: it goes. Other outputs' stay."""
    stale = tmp_path / ".out.build-deadbeef"
    kept = [tmp_path / name for name in (".other.build-deadbeef", ".out.build-x.build-deadbeef", ".out.build-notes")]
    for folder in (stale, *kept):  # another output's; a build to `-o out.build-x`; a user's folder
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"half")
    compile(bert_folders["sequence"], "x86-64-avx2", tmp_path / "out")
    assert not stale.exists() and all(folder.exists() for folder in kept)


def test_sigterm_cleans_up_as_ctrl_c_does(bert_folders, tmp_path):
    """`timeout`, a supervisor or `kill` stop a compile with SIGTERM: no staging folder or lock stays."""
    import os
    import signal
    import subprocess
    import sys

    command = [sys.executable, "-m", "edgekiln.cli.main", "compile", str(bert_folders["sequence"])]
    command += ["-o", str(tmp_path / "out"), "--target", "x86-64-avx2", "--no-cache"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as process:
        for line in process.stdout:
            if "…" in line:  # a pass has started: the staging folder exists
                process.send_signal(signal.SIGTERM)
                break
        output = process.stdout.read()
        assert process.wait(60) == 143, output
    assert "edgekiln: terminated" in output
    assert sorted(path.name for path in tmp_path.iterdir()) == []
