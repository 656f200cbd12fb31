"""OpenVINO's compiled-model cache: one folder per artifact under `<cache root>/openvino`, kept bounded.

OpenVINO stores a compiled blob about the size of the model's weights for each artifact (and one more
per static shape): a device that installs one artifact after another would fill its disk. After each
artifact opens, the folders of the least recently used artifacts are removed until the cache is within
its limit, `$EDGEKILN_OPENVINO_CACHE_GB` (default 4; 0 turns the cache off). The artifact being opened
is always kept, and so is any folder used in the last minute (another process may be writing it)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import time
from pathlib import Path

from ..cache_root import cache_root
from ..errors import InputError

LIMIT_ENV = "EDGEKILN_OPENVINO_CACHE_GB"
DEFAULT_LIMIT_GB = 4.0
RECENT_SECONDS = 60.0


def cache_folder(artifact_id: str) -> Path:
    """Where OpenVINO caches this artifact's compiled blob: a folder named by the id when it is
    plain hex (as the manifest schema requires), else by its hash, always inside the cache root."""
    name = (
        artifact_id
        if re.fullmatch("[0-9a-f]{1,64}", artifact_id)
        else hashlib.sha256(artifact_id.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    )
    return cache_root() / "openvino" / name


def limit_bytes() -> int:
    """The cache's limit from $EDGEKILN_OPENVINO_CACHE_GB; one error line when it is not a number ≥ 0."""
    text = os.environ.get(LIMIT_ENV, "").strip()
    if not text:
        return int(DEFAULT_LIMIT_GB * 2**30)
    try:
        gigabytes = float(text)
    except ValueError:
        gigabytes = -1.0
    if not gigabytes >= 0 or gigabytes == float("inf"):
        raise InputError(
            f"{LIMIT_ENV}={text!r} is not a size: expected a number of gigabytes ≥ 0",
            hint=f"e.g. {LIMIT_ENV}=2, or 0 to run without OpenVINO's compiled-model cache",
        )
    return int(gigabytes * 2**30)


def mark_used(folder: Path) -> None:
    """Record that `folder` was used now (its modification time orders the eviction)."""
    try:
        os.utime(folder)
    except OSError:
        pass


def trim(root: Path, keep: Path, limit: int, now: float | None = None) -> list[Path]:
    """Remove the least recently used artifact folders under `root` until the total size is within
    `limit`; never `keep`, nor a folder used in the last minute. Returns the folders removed."""
    now = time.time() if now is None else now
    entries = []
    for folder in _folders(root):
        size, used = _size_and_use(folder)
        entries.append((used, size, folder))
    total = sum(size for _, size, _ in entries)
    removed = []
    for used, size, folder in sorted(entries, key=lambda entry: entry[0]):
        if total <= limit:
            break
        if folder == keep or now - used < RECENT_SECONDS:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        total -= size
        removed.append(folder)
    return removed


def _folders(root: Path) -> list[Path]:
    try:
        return [path for path in root.iterdir() if path.is_dir() and not path.is_symlink()]
    except OSError:
        return []


def _size_and_use(folder: Path) -> tuple[int, float]:
    size, used = 0, 0.0
    try:
        used = folder.stat().st_mtime
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink():
                stat = path.stat()
                size += stat.st_size
                used = max(used, stat.st_mtime)
    except OSError:  # removed meanwhile by another process
        pass
    return size, used
