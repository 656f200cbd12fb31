"""Reading an artifact folder: signature (when keys are trusted), schema, identity, then every file.

The manifest is read once as bytes: the signature is checked on those bytes, and those bytes are
parsed. `artifact_id` is recomputed from the manifest's fields, so an edited manifest is refused;
every file the runtime will open must be listed in `files` (and so hashed), inside the folder.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from .errors import ArtifactError
from .hashing import sha256_file
from .manifest import MANIFEST_FILE, OLDEST_SCHEMA_VERSION, SCHEMA_VERSION, Manifest, artifact_identity
from .paths import inside

_RECOMPILE = "recompile it with `edgekiln compile`"
TrustedKeys = Iterable["str | bytes | Path"]


def read_manifest(folder: Path, *, trusted_keys: TrustedKeys | None = None) -> Manifest:
    """Parse `manifest.json` of an artifact folder, refusing unknown or newer schemas and edits
    (its artifact_id must match its fields); with `trusted_keys`, it must be signed by one of them."""
    folder = Path(folder)
    if folder.is_file():
        raise ArtifactError(
            f"{folder} is a file, not an artifact folder",
            hint=f"compile a model into one first (edgekiln compile {folder} -o OUT), then pass OUT",
        )
    if not folder.is_dir():
        raise ArtifactError(
            f"artifact folder {folder} does not exist",
            hint="pass the folder `edgekiln compile -o` wrote",
        )
    path = folder / MANIFEST_FILE
    if path.is_symlink():  # its hashes vouch for the other files; it must be this folder's own
        raise ArtifactError(
            f"{path} is a symbolic link; an artifact's manifest is a file in its folder", hint=_RECOMPILE
        )
    if not path.is_file():
        raise ArtifactError(
            f"{folder} is not an edgekiln artifact: it has no {MANIFEST_FILE}",
            hint="pass the folder `edgekiln compile -o` wrote",
        )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ArtifactError(f"cannot read {path} ({exc.strerror or exc})", hint=_RECOMPILE) from None
    if trusted_keys is not None:
        from .signing import check_signature

        check_signature(folder, data, trusted_keys)
    try:
        return _parse(path, data)
    except RecursionError:
        raise ArtifactError(f"{path} is nested too deeply to be a manifest", hint=_RECOMPILE) from None


def _parse(path: Path, data: bytes) -> Manifest:
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise ArtifactError(f"{path} is not valid JSON ({exc})", hint=_RECOMPILE) from None
    if not isinstance(raw, dict):
        raise ArtifactError(f"{path} holds a {type(raw).__name__}, expected a JSON object", hint=_RECOMPILE)
    _check_schema_version(path, raw.get("schema_version"))
    try:
        manifest = Manifest.model_validate(raw)
    except ValidationError as exc:
        raise ArtifactError(f"{path}: {first_error(exc)}", hint=_RECOMPILE) from None
    computed = artifact_identity(raw)
    if computed != manifest.artifact_id:
        raise ArtifactError(
            f"{path} does not match its artifact_id (recorded {manifest.artifact_id}, its fields hash to "
            f"{computed}): the manifest was edited after the build",
            hint="restore the manifest the compiler wrote, or recompile the artifact",
        )
    return manifest


def first_error(exc: ValidationError) -> str:
    """One line for a pydantic error: the first failing field and why."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "(top level)"
    return f"field `{where}`: {first['msg']}"


def _check_schema_version(path: Path, version: object) -> None:
    if not isinstance(version, int) or isinstance(version, bool):
        raise ArtifactError(f"{path}: schema_version must be an integer, found {version!r}", hint=_RECOMPILE)
    if version > SCHEMA_VERSION:
        raise ArtifactError(
            f"{path}: artifact schema version {version} is newer than this runtime supports ({SCHEMA_VERSION})",
            hint="upgrade edgekiln on this machine: pip install -U edgekiln",
        )
    if version < OLDEST_SCHEMA_VERSION:
        raise ArtifactError(
            f"{path}: artifact schema version {version} is older than this runtime supports "
            f"({OLDEST_SCHEMA_VERSION} to {SCHEMA_VERSION})",
            hint=_RECOMPILE,
        )


def check_artifact(folder: Path, manifest: Manifest, *, hashes: bool = True) -> None:
    """Everything short of opening the backend: every file the runtime will open is listed, lies
    inside the folder and (with `hashes`) has its recorded sha256."""
    _require_listed(manifest, _named_files(manifest), "the manifest names it")
    if hashes:
        verify_files(folder, manifest)
    else:
        for relative in manifest.files:
            if not inside(folder, relative).is_file():
                raise ArtifactError(f"artifact {folder} is missing {relative}", hint=_RECOMPILE)
    _require_listed(manifest, _backend_files(Path(folder), manifest), f"the {_backend(manifest)} backend opens it")


def verify_files(folder: Path, manifest: Manifest) -> None:
    """Check that every file the manifest lists exists, inside the folder, with the recorded sha256."""
    for relative, expected in manifest.files.items():
        path = inside(folder, relative)
        if not path.is_file():
            raise ArtifactError(f"artifact {folder} is missing {relative}", hint=_RECOMPILE)
        found = sha256_file(path)
        if found != expected:
            raise ArtifactError(
                f"artifact file {relative} does not match its manifest hash "
                f"(expected sha256 {expected[:12]}…, found {found[:12]}…): it was modified or corrupted",
                hint=_RECOMPILE,
            )
    _require_listed(manifest, [manifest.model_file], "it is the model_file")


def _require_listed(manifest: Manifest, needed: Iterable[str], why: str) -> None:
    for relative in needed:
        if relative not in manifest.files:
            raise ArtifactError(
                f"manifest does not list {relative!r} among its hashed files, yet {why}", hint=_RECOMPILE
            )


def _named_files(manifest: Manifest) -> list[str]:
    named = [manifest.model_file]
    if manifest.tokenizer is not None:
        named.append(manifest.tokenizer.file)
    if manifest.reference is not None:
        named.append(manifest.reference)
    return named


def _backend(manifest: Manifest) -> str:
    return getattr(manifest.backend, "value", manifest.backend)


def _backend_files(folder: Path, manifest: Manifest) -> list[str]:
    """Files the backend opens besides model_file, as its spec says (none known for a backend that is not
    installed here: opening it will say so)."""
    from .backends import backend_spec
    from .backends.spec import load_object
    from .errors import BackendUnavailableError

    try:
        spec = backend_spec(manifest.backend)
    except BackendUnavailableError:
        return []
    return [] if spec.opened_files is None else list(load_object(spec.opened_files)(Path(folder), manifest))
