"""An artifact's `reports/` folder, read and written never through a symbolic link.

`reports/` is not hashed (reports describe a build, they are not run), so a link placed there must
not make `bench` or `verify` overwrite a file elsewhere, nor the page embed one: the folder itself
must be a real folder, files are written to a temporary name and renamed over the old one (a rename
replaces a link, it does not follow it), and links are skipped when reading.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path

from ..manifest import REPORTS_DIR


def reports_dir(folder: Path) -> Path:
    """`folder/reports`, made if absent, refused (OSError) if it is a link or not a folder."""
    path = Path(folder) / REPORTS_DIR
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise OSError(errno.ELOOP, f"{path} is a symbolic link or not a folder; no report is written through it")
    path.mkdir(exist_ok=True)
    return path


def write_text(directory: Path, name: str, text: str) -> Path:
    """Write `directory/name` by renaming a new file over it."""
    descriptor, temporary = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temporary, 0o644)
        os.replace(temporary, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    return directory / name


def report_files(directory: Path, pattern: str = "*.json") -> list[Path]:
    """The plain files (not links) in `directory` matching `pattern`, sorted."""
    if directory.is_symlink() or not directory.is_dir():
        return []
    return [path for path in sorted(directory.glob(pattern)) if is_plain_file(path)]


def is_plain_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()
