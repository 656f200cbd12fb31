"""Backend registry: one module per backend, each registering an opener for its `Backend` value.

Third-party backends register themselves through the `edgekiln.backends` entry-point group: the
entry point must name a callable `open(folder, manifest, options) -> BackendSession`.
"""
from __future__ import annotations

from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable

from ..errors import BackendUnavailableError
from ..manifest import Backend, Manifest
from .base import BackendOptions, BackendSession

Opener = Callable[[Path, Manifest, BackendOptions], BackendSession]

_BUILTIN = {Backend.ONNXRUNTIME: "edgekiln.runtime.backends.onnxruntime",
            Backend.OPENVINO: "edgekiln.runtime.backends.openvino",
            Backend.TVM: "edgekiln.runtime.backends.tvm"}


def open_backend(folder: Path, manifest: Manifest, options: BackendOptions) -> BackendSession:
    return _opener(manifest.backend)(folder, manifest, options)


def _opener(backend: Backend) -> Opener:
    module_name = _BUILTIN.get(backend)
    if module_name is not None:
        return import_module(module_name).open_session
    for entry in entry_points(group="edgekiln.backends"):
        if entry.name == backend.value:
            return entry.load()
    raise BackendUnavailableError(
        f"this edgekiln runtime cannot run {backend.value} artifacts yet",
        hint=f"runtimes available here: {', '.join(b.value for b in _BUILTIN)}; "
             "recompile with --backend onnxruntime")


__all__ = ["BackendOptions", "BackendSession", "open_backend"]
