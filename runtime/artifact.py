"""Reading an artifact folder: schema check first, then every file's hash."""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError

from .errors import ArtifactError
from .hashing import sha256_file
from .manifest import MANIFEST_FILE, SCHEMA_VERSION, Manifest

_RECOMPILE = "recompile it with `edgekiln compile`"


def read_manifest(folder: Path) -> Manifest:
    """Parse `manifest.json` of an artifact folder, refusing unknown or newer schemas."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ArtifactError(f"artifact folder {folder} does not exist or is not a folder",
                            hint="pass the folder `edgekiln compile -o` wrote")
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise ArtifactError(f"{folder} is not an edgekiln artifact: it has no {MANIFEST_FILE}",
                            hint="pass the folder `edgekiln compile -o` wrote")
    try:
        raw = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc})", hint=_RECOMPILE) from None
    if not isinstance(raw, dict):
        raise ArtifactError(f"{path} holds a {type(raw).__name__}, expected a JSON object", hint=_RECOMPILE)
    _check_schema_version(path, raw.get("schema_version"))
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ArtifactError(f"{path}: field `{where}`: {first['msg']}", hint=_RECOMPILE) from None


def _check_schema_version(path: Path, version: object) -> None:
    if not isinstance(version, int) or isinstance(version, bool):
        raise ArtifactError(f"{path}: schema_version must be an integer, found {version!r}", hint=_RECOMPILE)
    if version > SCHEMA_VERSION:
        raise ArtifactError(
            f"{path}: artifact schema version {version} is newer than this runtime supports ({SCHEMA_VERSION})",
            hint="upgrade edgekiln on this machine: pip install -U edgekiln")
    if version < SCHEMA_VERSION:
        raise ArtifactError(
            f"{path}: artifact schema version {version} is older than this runtime supports ({SCHEMA_VERSION})",
            hint=_RECOMPILE)


def verify_files(folder: Path, manifest: Manifest) -> None:
    """Check that every file the manifest lists exists and has the recorded sha256."""
    folder = Path(folder).resolve()
    for relative, expected in manifest.files.items():
        path = (folder / relative).resolve()
        if folder not in path.parents:
            raise ArtifactError(f"manifest lists {relative!r}, which lies outside the artifact folder",
                                hint=_RECOMPILE)
        if not path.is_file():
            raise ArtifactError(f"artifact {folder} is missing {relative}", hint=_RECOMPILE)
        found = sha256_file(path)
        if found != expected:
            raise ArtifactError(
                f"artifact file {relative} does not match its manifest hash "
                f"(expected sha256 {expected[:12]}…, found {found[:12]}…): it was modified or corrupted",
                hint=_RECOMPILE)
    if manifest.model_file not in manifest.files:
        raise ArtifactError(f"manifest's model_file {manifest.model_file!r} is not among its hashed files",
                            hint=_RECOMPILE)
