"""Content-addressed cache of pass outputs: a folder per (pass, version, config, input, tools) hash."""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Callable

_DONE = ".complete"


def default_cache_dir() -> Path:
    configured = os.environ.get("EDGEKILN_CACHE")
    if configured:
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgekiln"


class PassCache:
    """`run(key, work)` returns a folder holding what `work(folder)` wrote, computed once per key.

    With caching off, every call computes into a fresh folder under `scratch`.
    """

    def __init__(self, root: Path | None, scratch: Path) -> None:
        self.root = None if root is None else Path(root) / "passes"
        self.scratch = scratch

    def run(self, key: str, work: Callable[[Path], None]) -> tuple[Path, bool]:
        if self.root is None:
            folder = Path(tempfile.mkdtemp(dir=self.scratch, prefix="pass-"))
            work(folder)
            return folder, False
        final = self.root / key[:2] / key
        if (final / _DONE).is_file():
            return final, True
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = final.parent / f".{key}.{uuid.uuid4().hex}.tmp"
        staging.mkdir()
        try:
            work(staging)
            (staging / _DONE).touch()
            try:
                staging.rename(final)
            except OSError:  # another build stored the same key first, or a stale incomplete entry
                if not (final / _DONE).is_file():
                    shutil.rmtree(final, ignore_errors=True)
                    staging.rename(final)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return final, False
