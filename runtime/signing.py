"""Optional Ed25519 signatures: who built an artifact, checked where it runs.

`sign_artifact` writes `signature.json` beside the manifest: the signer's public key and a signature
over the manifest file's exact bytes. The manifest holds every file's sha256 and its own
artifact_id, so one signature covers the whole artifact. `load(..., trusted_keys=[...])` refuses
an artifact that is unsigned, or signed by a key it was not given, or whose manifest changed since.
Needs the `cryptography` package (`pip install 'edgekiln[sign]'`).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .artifact import first_error
from .errors import ArtifactError, BackendUnavailableError, InputError
from .manifest import MANIFEST_FILE

SIGNATURE_FILE = "signature.json"
ALGORITHM = "ed25519"
_RAW_KEY_BYTES = 32


class Signature(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal[1] = 1
    algorithm: Literal["ed25519"] = ALGORITHM
    public_key: str  # base64 of the 32 raw bytes
    signature: str  # base64 of the 64-byte signature over manifest.json's bytes
    signed_file: Literal["manifest.json"] = MANIFEST_FILE


def _crypto():
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise BackendUnavailableError(
            "signing and signature checks need the `cryptography` package", hint="pip install 'edgekiln[sign]'"
        ) from None
    return ed25519, serialization, InvalidSignature


def generate_key(out: str | os.PathLike) -> tuple[Path, Path]:
    """A new Ed25519 key pair: the private key (PEM, readable by its owner only) at `out`, the public
    key at `out`.pub. Neither may exist already."""
    ed25519, serialization, _ = _crypto()
    private_path, public_path = Path(out), Path(f"{out}.pub")
    for path in (private_path, public_path):
        if path.exists():
            raise InputError(f"{path} already exists", hint="choose another name; keys are never overwritten")
    key = ed25519.Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    try:
        handle = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(handle, "wb") as stream:
            stream.write(private_pem)
        public_path.write_bytes(public_pem)
    except OSError as exc:
        raise InputError(f"cannot write the key pair at {private_path} ({exc.strerror or exc})") from None
    return private_path, public_path


def sign_artifact(folder: str | os.PathLike, private_key_path: str | os.PathLike) -> Path:
    """Check the artifact (manifest, artifact_id, every file's hash), then sign its manifest with
    the Ed25519 private key at `private_key_path`; returns the path of `signature.json`."""
    from .artifact import check_artifact, read_manifest

    ed25519, serialization, _ = _crypto()
    folder = Path(folder)
    check_artifact(folder, read_manifest(folder))
    key = _private_key(Path(private_key_path), ed25519, serialization)
    data = (folder / MANIFEST_FILE).read_bytes()
    raw_public = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    record = Signature(
        public_key=base64.b64encode(raw_public).decode(), signature=base64.b64encode(key.sign(data)).decode()
    )
    path = folder / SIGNATURE_FILE
    partial = folder / f".{SIGNATURE_FILE}.partial"
    try:
        partial.write_text(json.dumps(record.model_dump(), indent=2))
        partial.replace(path)
    except OSError as exc:
        raise InputError(f"cannot write {path} ({exc.strerror or exc})") from None
    return path


def check_private_key(path: str | os.PathLike) -> None:
    """InputError unless `path` holds an unencrypted Ed25519 private key: check it before a long compile."""
    ed25519, serialization, _ = _crypto()
    _private_key(Path(path), ed25519, serialization)


def _private_key(path: Path, ed25519, serialization):
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except OSError as exc:
        raise InputError(f"cannot read private key {path} ({exc.strerror or exc})") from None
    except (ValueError, TypeError) as exc:  # not PEM, or encrypted
        raise InputError(
            f"{path} is not an unencrypted PEM private key ({exc})", hint="make one with `edgekiln keygen KEY`"
        ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise InputError(f"{path} is not an Ed25519 private key", hint="make one with `edgekiln keygen KEY`")
    return key


def check_signature(folder: Path, manifest_bytes: bytes, trusted_keys: Iterable[str | os.PathLike | bytes]) -> None:
    """Refuse unless `signature.json` signs exactly `manifest_bytes` with one of `trusted_keys`."""
    ed25519, _, invalid = _crypto()
    if isinstance(trusted_keys, (str, bytes, bytearray, os.PathLike)):  # one key, not a list of them
        trusted_keys = [trusted_keys]
    trusted = [public_key_bytes(key) for key in trusted_keys]
    if not trusted:
        raise InputError(
            "trusted_keys is empty: no artifact could be accepted",
            hint="pass the public key (.pub) of whoever signs your artifacts",
        )
    if (Path(folder) / SIGNATURE_FILE).is_symlink():
        raise ArtifactError(
            f"{SIGNATURE_FILE} is a symbolic link; a signature is a file in the artifact's folder",
            hint="sign the artifact again: edgekiln sign ART --key KEY",
        )
    record = _read_signature(Path(folder) / SIGNATURE_FILE)
    try:
        public = base64.b64decode(record.public_key, validate=True)
        signature = base64.b64decode(record.signature, validate=True)
    except binascii.Error:
        raise ArtifactError(
            f"{SIGNATURE_FILE} holds a key or signature that is not base64",
            hint="sign the artifact again: edgekiln sign ART --key KEY",
        ) from None
    if public not in trusted:
        raise ArtifactError(
            f"artifact {folder} is signed by a key that is not trusted here (public key {record.public_key[:12]}…)",
            hint="pass the signer's public key with --trusted-key, or use an artifact its owner signed",
        )
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(public).verify(signature, manifest_bytes)
    except (invalid, ValueError):
        raise ArtifactError(
            f"artifact {folder}: the signature does not match {MANIFEST_FILE} "
            "(the manifest changed after signing, or the signature is forged)",
            hint="use the artifact exactly as its owner signed it",
        ) from None


def _read_signature(path: Path) -> Signature:
    if not path.is_file():
        raise ArtifactError(
            f"artifact {path.parent} is not signed (it has no {SIGNATURE_FILE}), and keys are trusted here",
            hint="sign it with `edgekiln sign ART --key KEY`",
        )
    try:
        return Signature.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ArtifactError(f"cannot read {path} ({exc.strerror or exc})") from None
    except ValidationError as exc:
        raise ArtifactError(
            f"{path} is not a valid signature: {first_error(exc)}",
            hint="sign the artifact again: edgekiln sign ART --key KEY",
        ) from None


def public_key_bytes(key: str | os.PathLike | bytes) -> bytes:
    """The 32 raw bytes of an Ed25519 public key given as a PEM file path, PEM bytes or raw bytes."""
    ed25519, serialization, _ = _crypto()
    if isinstance(key, (bytes, bytearray)):
        data, where = bytes(key), "the key bytes given"
        if len(data) == _RAW_KEY_BYTES:
            return data
    else:
        where = str(key)
        try:
            data = Path(key).read_bytes()
        except (OSError, TypeError) as exc:
            raise InputError(f"cannot read trusted key {where} ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        public = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise InputError(
            f"{where} is not a PEM public key (nor 32 raw Ed25519 key bytes)",
            hint="pass the .pub file `edgekiln keygen` wrote",
        ) from None
    if not isinstance(public, ed25519.Ed25519PublicKey):
        raise InputError(f"{where} is not an Ed25519 public key", hint="pass the .pub file `edgekiln keygen` wrote")
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
