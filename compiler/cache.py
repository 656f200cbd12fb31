"""Content-addressed cache of pass outputs: a folder per (pass, version, config, input, tools) hash."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from edgekiln.runtime.cache_root import cache_root
from edgekiln.runtime.hashing import sha256_file

_DONE = ".complete"


def default_cache_dir() -> Path:
    return cache_root()


class PassCache:
    """`run(key, work)` returns a folder holding what `work(folder)` wrote, computed once per key.

    The entry's marker file holds the sha256 of every file `work` wrote; a hit is used only when the
    files still match, else the entry is evicted (and `say` is told) and computed again.
    With caching off, every call computes into a fresh folder under `scratch`.
    """

    def __init__(self, root: Path | None, scratch: Path) -> None:
        self.root = None if root is None else Path(root) / "passes"
        self.scratch = scratch

    def run(
        self, key: str, work: Callable[[Path], None], say: Callable[[str], None] | None = None
    ) -> tuple[Path, bool]:
        if self.root is None:
            folder = Path(tempfile.mkdtemp(dir=self.scratch, prefix="pass-"))
            work(folder)
            return folder, False
        final = self.root / key[:2] / key
        if final.exists():
            problem = entry_problem(final)
            if problem is None:
                return final, True
            _evict(final)
            (say or (lambda message: None))(
                f"cached result {key[:12]} is not usable ({problem}): removed it, computing it again"
            )
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / f".{key}.{uuid.uuid4().hex}.tmp"
        staging.mkdir()
        try:
            work(staging)
            (staging / _DONE).write_text(json.dumps(_hashes(staging), indent=1, sort_keys=True))
            try:
                staging.rename(final)
            except OSError:  # another build stored the same key first, or a stale damaged entry
                if entry_problem(final) is not None:
                    _evict(final)
                    staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final, False


def entry_problem(folder: Path) -> str | None:
    """None when a cache entry is complete and every file matches the hash stored when it was made."""
    try:
        recorded = json.loads((folder / _DONE).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return "no readable list of file hashes: unfinished, or made by an older edgekiln"
    if not isinstance(recorded, dict):
        return "its list of file hashes is not a JSON object"
    found = _hashes(folder)
    for name in sorted(set(recorded) | set(found)):
        if name not in found:
            return f"{name} is missing"
        if name not in recorded:
            return f"{name} was added after it was stored"
        if found[name] != recorded[name]:
            return f"{name} does not match its stored sha256"
    return None


def _hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file under `folder` (symlinks not followed), by relative path; the marker left out."""
    hashes = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            relative = path.relative_to(folder).as_posix()
            if relative != _DONE:
                hashes[relative] = "symlink" if path.is_symlink() else sha256_file(path)
    return hashes


def _evict(final: Path) -> None:
    """Rename the entry aside first, so a reader never sees it half removed, then delete it."""
    doomed = final.parent / f".{final.name}.{uuid.uuid4().hex}.evicted"
    try:
        final.rename(doomed)
    except FileNotFoundError:  # another build evicted it already
        return
    shutil.rmtree(doomed, ignore_errors=True)
