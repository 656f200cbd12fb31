"""Output folders and the pass cache: nothing is lost, nothing stale or damaged is reused."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from edgekiln.compiler import Recipe, compile
from edgekiln.compiler.artifact_writer import check_output_folder, replacement_problem
from edgekiln.compiler.cache import PassCache, entry_problem
from edgekiln.compiler.errors import CompileError
from edgekiln.compiler.folders import lock_path, move_into_place, output_lock
from edgekiln.runtime.hashing import sha256_file


@pytest.fixture(scope="module")
def built(bert_folders, tmp_path_factory) -> dict:
    """One tiny artifact, compiled with a cache of its own."""
    root = tmp_path_factory.mktemp("built")
    result = compile(
        bert_folders["sequence"], "x86-64-avx2", root / "art", recipe=Recipe.from_flags(cache_dir=root / "cache")
    )
    return {"artifact": result.path, "cache": root / "cache", "manifest": result.manifest}


def _finished(tmp_path: Path, name: str, content: str) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "result.txt").write_text(content)
    return folder


def test_only_a_provable_artifact_is_replaceable(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built["artifact"], copy)
    assert replacement_problem(copy) is None
    (copy / "reports" / "benchmark.json").write_text("{}")  # `edgekiln bench` adds this
    assert replacement_problem(copy) is None
    (tmp_path / "empty").mkdir()
    assert replacement_problem(tmp_path / "empty") is None

    (copy / "notes.txt").write_text("mine")
    assert "notes.txt" in replacement_problem(copy)
    (copy / "notes.txt").unlink()
    (copy / "src").mkdir()
    assert "an empty folder src" in replacement_problem(copy)
    (copy / "src").rmdir()
    (copy / "link").symlink_to(tmp_path / "empty")
    assert "a symlink link" in replacement_problem(copy)
    (copy / "link").unlink()
    (copy / "model.onnx").write_bytes(b"edited")
    assert "model.onnx, which differs from its manifest hash" in replacement_problem(copy)

    lookalike = tmp_path / "site"  # the case: any manifest.json with a web site beside it
    lookalike.mkdir()
    (lookalike / "manifest.json").write_text(json.dumps({"name": "my web app"}))
    (lookalike / "index.html").write_text("<html>")
    assert "is not an edgekiln artifact" in replacement_problem(lookalike)


def test_check_output_folder_refusals(built, tmp_path):
    (tmp_path / "a").write_text("a file")
    for target in (tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"):
        with pytest.raises(CompileError, match=r"a is a file, not a folder"):
            check_output_folder(target, force=False)
    with pytest.raises(CompileError, match="already exists.*--force"):
        check_output_folder(built["artifact"], force=False)
    check_output_folder(built["artifact"], force=True)
    for force in (True, False):  # without --force it said "already exists (pass --force)", which cannot help
        with pytest.raises(CompileError, match="is a file, not a folder"):
            check_output_folder(tmp_path / "a", force=force)


def test_without_replace_a_folder_that_appeared_is_kept_and_so_is_the_result(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "thesis.tex").write_text("years of work")
    with pytest.raises(CompileError, match=r"appeared while this build was running.*new result is at") as info:
        move_into_place(_finished(tmp_path, "new", "result"), target)
    assert (target / "thesis.tex").read_text() == "years of work"
    kept = Path(str(info.value.message).rsplit("new result is at ", 1)[1])
    assert (kept / "result.txt").read_text() == "result"
    move_into_place(_finished(tmp_path, "second", "2"), tmp_path / "free")
    assert (tmp_path / "free" / "result.txt").read_text() == "2"


def test_swap_checks_the_old_folder_again_at_the_moment_of_replacement(built, tmp_path):
    target = tmp_path / "out"
    shutil.copytree(built["artifact"], target)
    check_output_folder(target, force=True)  # an artifact when the build started ...
    (target / "notes.txt").write_text("added during the build")  # ... but not any more
    with pytest.raises(CompileError, match="notes.txt that its manifest does not list; refusing to replace it"):
        move_into_place(_finished(tmp_path, "new", "result"), target, replaceable=replacement_problem)
    assert (target / "notes.txt").read_text() == "added during the build"
    assert (target / "manifest.json").is_file()
    (target / "notes.txt").unlink()
    move_into_place(_finished(tmp_path, "new2", "result"), target, replaceable=replacement_problem)
    assert sorted(p.name for p in target.iterdir()) == ["result.txt"]
    assert not [p for p in tmp_path.iterdir() if ".old-" in p.name]  # the old artifact is gone


def test_two_builds_swapping_into_one_folder_never_lose_a_result(tmp_path):
    target, errors = tmp_path / "out", []
    folders = [_finished(tmp_path, f"build{i}", str(i)) for i in range(8)]
    start = threading.Barrier(len(folders))

    def publish(folder: Path) -> None:
        start.wait()
        try:
            move_into_place(folder, target)
        except CompileError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(folder,)) for folder in folders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == len(folders) - 1
    results = sorted(p.joinpath("result.txt").read_text() for p in tmp_path.iterdir() if p.name.startswith("out"))
    assert results == [str(i) for i in range(8)]  # one in place, seven kept beside it


_HOLD = """
import sys
from pathlib import Path
from edgekiln.compiler.folders import output_lock
with output_lock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_output_lock_is_exclusive_across_processes(tmp_path):
    target = tmp_path / "deep" / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(target)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        busy = rf"another edgekiln build is writing .*out \(pid {holder.pid} holds"
        with pytest.raises(CompileError, match=busy), output_lock(target):
            pass
    finally:
        holder.communicate("\n", timeout=60)
    assert holder.returncode == 0
    assert not lock_path(target).exists()
    with output_lock(target) as path:  # free again once the holder is done
        assert path == lock_path(target) and path.read_text() == str(os.getpid())
    with output_lock(target):  # and released on exit
        pass


def test_output_lock_refuses_a_symlink_and_a_file_parent(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    lock_path(tmp_path / "out").symlink_to(victim)
    with pytest.raises(CompileError, match="cannot use .*lock file") as error, output_lock(tmp_path / "out"):
        pass
    assert victim.read_text() == "keep" and error.value.hint == f"remove {lock_path(tmp_path / 'out')}"
    with pytest.raises(CompileError, match="victim.txt is a file, not a folder"), output_lock(victim / "out"):
        pass


def test_output_lock_in_a_folder_where_no_file_can_be_made_names_the_folder(tmp_path):
    """/proc takes no new files, even for root: the hint is another -o folder, not removing a lock file
    that does not exist."""
    with pytest.raises(CompileError, match="lock file") as error, output_lock(Path("/proc/edgekiln-out")):
        pass
    assert error.value.hint == "choose another -o folder: no file can be created in /proc"


def test_pass_cache_checks_every_file_on_a_hit(tmp_path):
    cache, calls, said = PassCache(tmp_path / "cache", tmp_path), [], []

    def work(folder: Path) -> None:
        calls.append(folder)
        (folder / "weights.bin").write_bytes(bytes(range(256)))
        (folder / "sub").mkdir()
        (folder / "sub" / "model.xml").write_text("<net/>")

    folder, cached = cache.run("ab" * 32, work, say=said.append)
    assert not cached and entry_problem(folder) is None
    assert cache.run("ab" * 32, work, say=said.append) == (folder, True) and len(calls) == 1
    (folder / "weights.bin").write_bytes(bytes(reversed(range(256))))  # edited weights, same size
    again, cached = cache.run("ab" * 32, work, say=said.append)
    assert not cached and len(calls) == 2 and again == folder
    assert (folder / "weights.bin").read_bytes() == bytes(range(256))
    assert said == [
        (
            f"cached result {'ab' * 6} is not usable (weights.bin does not match its stored sha256): "
            "removed it, computing it again"
        )
    ]
    (folder / "sub" / "extra.txt").write_text("x")
    assert entry_problem(folder) == "sub/extra.txt was added after it was stored"
    (folder / ".complete").write_text("")  # an entry from an edgekiln without hashes
    assert "no readable list of file hashes" in entry_problem(folder)
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # nothing left half evicted


def test_damaged_cached_model_is_evicted_and_rebuilt(built, bert_folders, tmp_path):
    export = built["manifest"].passes[0]
    entry = next(p.parent for p in built["cache"].rglob("model.onnx") if sha256_file(p) == export.output_sha256)
    (entry / "model.onnx").write_bytes(b"\x08garbage, not a protobuf")
    said = []
    result = compile(
        bert_folders["sequence"],
        "x86-64-avx2",
        tmp_path / "again",
        progress=said.append,
        recipe=Recipe.from_flags(cache_dir=built["cache"]),
    )
    assert any("is not usable (model.onnx does not match its stored sha256)" in line for line in said), said
    assert sha256_file(entry / "model.onnx") == export.output_sha256 and entry_problem(entry) is None
    assert result.manifest.files == built["manifest"].files  # the same artifact as from a clean cache
    assert not result.manifest.passes[0].cached
