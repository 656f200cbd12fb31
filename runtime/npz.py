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
        _check_sizes(path, what)
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


_BOMB_RATIO, _BOMB_BYTES = 64, 64 << 20  # expands 64x, to more than 64 MiB: not an artifact's arrays


def _check_sizes(path: Path, what: str) -> None:
    """Before anything is allocated: no member expands like a decompression bomb, and no array header
    declares more data than its member holds (numpy would allocate the declared size first)."""
    if not zipfile.is_zipfile(path):
        return  # np.load's own error names it
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if info.file_size > _BOMB_BYTES and info.file_size > _BOMB_RATIO * max(info.compress_size, 1):
                raise ArtifactError(
                    f"{what}: {info.filename} expands from {info.compress_size:,} to {info.file_size:,} bytes "
                    "(a decompression bomb?)",
                    hint=_HINT,
                )
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version not in ((1, 0), (2, 0)):
                    continue  # np.load reads (or refuses) the rarer formats itself
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(member)
                declared = int(np.prod(shape, dtype=object)) * dtype.itemsize + member.tell()
            if declared > info.file_size:
                raise ArtifactError(
                    f"{what}: array {info.filename[:-4]!r} declares shape {list(shape)}, more data than the "
                    f"{info.file_size:,} bytes stored",
                    hint=_HINT,
                )
