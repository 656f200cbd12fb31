"""Backend registry: every backend is a `BackendSpec` (spec.py), found by name.

Built-in backends are runtime modules that define `SPEC`; third-party packages register theirs through
the `edgekiln.backends` entry-point group, whose object is a `BackendSpec` (or a module defining `SPEC`).
The manifest records the backend by name, so an artifact of a plugin backend loads wherever the plugin
is installed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from ..errors import BackendUnavailableError
from ..manifest import Manifest
from .base import BackendOptions, BackendSession
from .spec import BackendSpec, QuantizerSpec, load_object

Opener = Callable[[Path, Manifest, BackendOptions], BackendSession]

BUILTIN_MODULES = (
    "edgekiln.runtime.backends.onnxruntime",
    "edgekiln.runtime.backends.openvino",
    "edgekiln.runtime.backends.tvm",
)
ENTRY_POINT_GROUP = "edgekiln.backends"

_REGISTRY: dict[str, BackendSpec] = {}
_LOCK = threading.Lock()
_LOADED = False


def register_backend(spec: BackendSpec) -> BackendSpec:
    with _LOCK:
        known = _REGISTRY.get(spec.name)
        if known is not None and known != spec:
            raise BackendUnavailableError(
                f"two backends are registered as {spec.name!r}", hint="uninstall one of the plugins that provide it"
            )
        _REGISTRY[spec.name] = spec
    return spec


def backend_spec(name: str) -> BackendSpec:
    _load_all()
    if name not in _REGISTRY:
        raise BackendUnavailableError(
            f"unknown backend {name!r}: none by that name is installed here",
            hint=f"installed backends: {', '.join(backend_names())}; a plugin backend needs its package installed",
        )
    return _REGISTRY[name]


def backend_names() -> list[str]:
    _load_all()
    return list(_REGISTRY)


def open_backend(folder: Path, manifest: Manifest, options: BackendOptions) -> BackendSession:
    opener: Opener = load_object(backend_spec(manifest.backend).runtime)
    return opener(folder, manifest, options)


def _load_all() -> None:
    global _LOADED
    if _LOADED:
        return
    for module_name in BUILTIN_MODULES:
        register_backend(import_module(module_name).SPEC)
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry.load()
        except Exception as exc:  # a broken plugin must not take the built-in backends down with it
            raise BackendUnavailableError(
                f"backend plugin {entry.name!r} ({entry.value}) failed to load: {exc}",
                hint="reinstall or uninstall that plugin",
            ) from None
        spec = loaded.SPEC if isinstance(loaded, ModuleType) else loaded
        if not isinstance(spec, BackendSpec) or spec.name != entry.name:
            raise BackendUnavailableError(
                f"backend plugin {entry.name!r} does not provide a BackendSpec named {entry.name!r}",
                hint="its entry point must name a BackendSpec",
            )
        register_backend(spec)
    _LOADED = True


__all__ = [
    "BackendOptions",
    "BackendSession",
    "BackendSpec",
    "QuantizerSpec",
    "backend_names",
    "backend_spec",
    "open_backend",
    "register_backend",
]
