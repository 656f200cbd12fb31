"""Where edgekiln keeps what it can compute again: the compiler's pass cache, OpenVINO's compiled blobs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """$EDGEKILN_CACHE, else $XDG_CACHE_HOME/edgekiln, else ~/.cache/edgekiln."""
    configured = os.environ.get("EDGEKILN_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgekiln"
