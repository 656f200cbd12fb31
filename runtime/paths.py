"""Paths named inside an artifact (in `manifest.json` or `tvm.json`): relative, inside the folder.

A path is checked twice: as text when the file naming it is parsed (no absolute path, no `..`, no
backslash), and on disk before it is opened (after following symlinks it must still lie inside the
artifact folder), so an edited index can never make the runtime read or load a file from elsewhere.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Annotated

from pydantic import AfterValidator

from .errors import ArtifactError

_HINT = "recompile the artifact with `edgekiln compile`"


def check_relative(path: str) -> str:
    """`path` if it is a plain relative path (forward slashes, no `..`); ValueError otherwise."""
    if not path or "\\" in path or "\0" in path or ":" in path:
        raise ValueError(f"path {path!r} is not a plain relative path inside the artifact folder")
    posix = PurePosixPath(path)
    if posix.is_absolute() or PureWindowsPath(path).is_absolute():
        raise ValueError(f"path {path!r} is absolute: it lies outside the artifact folder")
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(
            f"path {path!r} lies outside the artifact folder or is not normalised (no '..', '.' or empty parts)"
        )
    return path


RelativePath = Annotated[str, AfterValidator(check_relative)]


def inside(folder: Path, relative: str) -> Path:
    """The file `relative` names in `folder`, after checking that it resolves (symlinks followed)
    inside the folder; ArtifactError otherwise."""
    try:
        check_relative(relative)
    except ValueError as exc:
        raise ArtifactError(str(exc), hint=_HINT) from None
    root = Path(folder).resolve()
    path = (root / relative).resolve()
    if root not in path.parents:
        raise ArtifactError(
            f"artifact path {relative!r} resolves to {path}, outside the artifact folder (a symlink leaving it?)",
            hint=_HINT,
        )
    return path
