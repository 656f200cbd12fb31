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
