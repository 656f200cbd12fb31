"""Putting a finished folder in place atomically: rename, never copy into the destination."""
from __future__ import annotations

import shutil
import uuid
from pathlib import Path


def move_into_place(finished: Path, target: Path) -> None:
    """Rename `finished` to `target`, replacing an existing `target` only once the new one is there."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        finished.rename(target)
        return
    retired = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    target.rename(retired)
    try:
        finished.rename(target)
    except OSError:
        retired.rename(target)
        raise
    shutil.rmtree(retired, ignore_errors=True)
