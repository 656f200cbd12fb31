"""A loaded artifact: `predict(texts)` for text tasks and `run(feeds)` for raw tensors."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .artifact import read_manifest, verify_files
from .backends import BackendOptions, BackendSession, open_backend
from .backends.base import Device
from .errors import InputError
from .manifest import Manifest, Task
from .postprocess import Classification, TokenTag
from .preprocess import TextEncoder
from .tasks import task_spec


class Session:
    def __init__(self, folder: Path, manifest: Manifest, backend: BackendSession,
                 encoder: TextEncoder | None, threads: int) -> None:
        self.folder = folder
        self.manifest = manifest
        self.backend = backend
        self.encoder = encoder
        self.threads = threads
        self._inputs = {spec.name: spec for spec in manifest.inputs}
        self.task_spec = task_spec(manifest.task)

    @property
    def task(self) -> Task:
        return self.manifest.task

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on named arrays; dtypes are converted to the manifest's, names and ranks checked."""
        return self.backend.run(self._check_feeds(feeds))

    def predict(self, items: Sequence[str] | str, **options):
        """Answers by task: Classifications, per-word tags, or a float32 array [n, dim] of embeddings.
        Images (paths, bytes, PIL images, uint8 arrays) for an image classifier, which takes `top=5`."""
        return self.task_spec.predict(self, items, **options)

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        missing = sorted(set(self._inputs) - set(feeds))
        unknown = sorted(set(feeds) - set(self._inputs))
        if missing or unknown:
            raise InputError(f"feeds do not match the model inputs: missing {missing}, unexpected {unknown}",
                             hint=f"expected exactly {sorted(self._inputs)}")
        checked = {}
        for name, spec in self._inputs.items():
            array = np.asarray(feeds[name])
            if array.ndim != len(spec.shape):
                raise InputError(f"input {name} has {array.ndim} dimensions, expected {len(spec.shape)} "
                                 f"(shape {list(spec.shape)})")
            fixed = [(axis, size) for axis, size in enumerate(spec.shape)
                     if isinstance(size, int) and array.shape[axis] != size]
            if fixed:
                axis, size = fixed[0]
                raise InputError(f"input {name} has size {array.shape[axis]} on axis {axis}, expected {size}")
            checked[name] = np.ascontiguousarray(array, dtype=spec.dtype)
        return checked


def load(path: str | os.PathLike, *, threads: int | None = None, device: str | Device = Device.AUTO,
         verify: bool = True) -> Session:
    """Load an artifact folder: check its schema and every file's hash, then open its backend."""
    folder = Path(path)
    manifest = read_manifest(folder)
    if verify:
        verify_files(folder, manifest)
    threads = _threads(threads, manifest)
    try:
        device = Device(device)
    except ValueError:
        raise InputError(f"unknown device {device!r}", hint=f"use one of {[d.value for d in Device]}") from None
    backend = open_backend(folder, manifest, BackendOptions(threads=threads, device=device))
    encoder = task_spec(manifest.task).preprocessor(folder, manifest)
    return Session(folder, manifest, backend, encoder, threads)


def _threads(threads: int | None, manifest: Manifest) -> int:
    if threads is None:
        return min(manifest.target.threads, os.cpu_count() or 1)
    if not isinstance(threads, int) or threads < 1:
        raise InputError(f"threads must be a positive integer, found {threads!r}")
    return threads


__all__ = ["Classification", "Session", "TokenTag", "load"]
