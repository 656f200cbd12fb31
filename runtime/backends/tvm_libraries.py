"""TVM libraries are loaded from copies named by their content, so a process never runs stale code.

dlopen returns a library already loaded from the same path, or from the same device and inode, without
reading the file again; a file written where a deleted one was often gets its inode back. An artifact
recompiled in place, or a new one written where another had been, then ran the old library in any
process that had loaded it (seen in CI: a ConvNeXt artifact calling a ViT library's `main`, which
wanted 23 arguments and got the ConvNeXt's 19). Each library is copied once into this process's own
folder (mode 0700, removed at exit) under its sha256: the same content gets the same name, which dlopen
may rightly reuse; other content never does."""

from __future__ import annotations

import atexit
import hashlib
import shutil
import tempfile
import threading
from pathlib import Path

_LOCK = threading.Lock()
_FOLDER: list[Path] = []  # this process's copies, made on first use


def loadable_copy(path: Path) -> Path:
    """A copy of the library at `path` that no other content was ever loaded from in this process."""
    data = path.read_bytes()
    name = hashlib.sha256(data).hexdigest() + path.suffix
    with _LOCK:
        if not _FOLDER:
            _FOLDER.append(Path(tempfile.mkdtemp(prefix="edgekiln-tvm-")))
            atexit.register(shutil.rmtree, _FOLDER[0], True)
        copy = _FOLDER[0] / name
        if not copy.exists():
            partial = _FOLDER[0] / f".{name}.partial"
            partial.write_bytes(data)
            partial.rename(copy)
    return copy
