"""Reading the `.npz` archives of an artifact (reference.npz, tvm_params.npz) without pickle:
numbers only, every failure one ArtifactError naming the file."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
from numpy.lib.npyio import NpzFile

from .errors import ArtifactError

NUMERIC_KINDS = "biuf"  # bool, signed and unsigned integers, floats
_HINT = "recompile the artifact with `edgekiln compile`"
_UNREADABLE = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, NotImplementedError, MemoryError)


def read_arrays(path: Path, what: str) -> dict[str, np.ndarray]:
    """Every array of the archive at `path` by key; `what` names the file for people."""
    try:
        stored = np.load(path, allow_pickle=False)
        if not isinstance(stored, NpzFile):
            raise ArtifactError(f"{what} is not an .npz archive", hint=_HINT)
        with stored:
            arrays = {key: stored[key] for key in stored.files}
    except _UNREADABLE as exc:  # ValueError: object arrays (they would need pickle), a malformed header
        raise ArtifactError(
            f"{what} cannot be read as numeric arrays: {str(exc).splitlines()[0]}", hint=_HINT
        ) from None
    for key, array in arrays.items():
        if array.dtype.kind not in NUMERIC_KINDS or not array.dtype.isnative:
            raise ArtifactError(
                f"{what}: array {key!r} has dtype {array.dtype}; expected native-order numbers", hint=_HINT
            )
    return arrays
