"""Editing artifacts in tests: plain edits (which the runtime must refuse) and edits "resealed"
the way a forger would do it (every listed file re-hashed, artifact_id recomputed), which only a
signature can catch."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgekiln.runtime.hashing import sha256_file
from edgekiln.runtime.manifest import artifact_identity


def read_manifest_json(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "manifest.json").read_text())


def write_manifest_json(folder: Path, manifest: dict[str, Any]) -> None:
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))


def edit_manifest(folder: Path, edit: Callable[[dict[str, Any]], None], *, reseal: bool = False) -> None:
    """Apply `edit` to manifest.json; with `reseal`, then re-hash the files it lists and recompute its id."""
    manifest = read_manifest_json(folder)
    edit(manifest)
    if reseal:
        reseal_manifest(folder, manifest)
    write_manifest_json(folder, manifest)


def reseal_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    files = manifest.get("files")
    if isinstance(files, dict):
        for relative in files:
            path = folder / str(relative)
            if isinstance(relative, str) and path.is_file() and path.resolve().is_relative_to(folder.resolve()):
                files[relative] = sha256_file(path)
    manifest["artifact_id"] = artifact_identity(manifest)
