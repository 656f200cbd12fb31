"""What every runtime backend provides."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import ArtifactError

# A model file up to this size is read once and run from the bytes whose hash is checked (a file swapped
# after the artifact's check is not what runs); past it, the transient copy costs too much memory.
FROM_BYTES_LIMIT = 256 << 20


class Device(str, Enum):
    AUTO = "auto"  # the artifact's target decides
    CPU = "cpu"
    CUDA = "cuda"


@dataclass(frozen=True)
class BackendOptions:
    threads: int
    device: Device = Device.AUTO
    verified: bool = True  # the artifact's files were hash-checked: a backend may check what it reads again


class BackendSession(Protocol):
    """A loaded model: named numpy arrays in, named numpy arrays out (owned by the caller)."""

    name: str

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def checked_bytes(path: Path, name: str, files: dict[str, str], verified: bool) -> bytes:
    """The bytes of the artifact file `name` (at `path`), checked against the manifest's hash `files[name]`
    when the artifact was verified: a file changed since the artifact's check is refused."""
    data = path.read_bytes()
    expected = files.get(name)
    if verified and expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise ArtifactError(f"artifact file {name} changed while the artifact was loading", hint="load it again")
    return data
