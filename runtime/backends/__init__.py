"""Backend registry: every backend is a `BackendSpec` (spec.py), found by name.

Built-in backends are runtime modules that define `SPEC`; third-party packages register theirs through
the `edgekiln.backends` entry-point group, whose object is a `BackendSpec` (or a module defining `SPEC`).
The manifest records the backend by name, so an artifact of a plugin backend loads wherever the plugin
is installed.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

from ..errors import BackendUnavailableError, EdgekilnError
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

BUILTIN_NAMES = frozenset(("onnxruntime", "openvino", "tvm"))

_REGISTRY: dict[str, BackendSpec] = {}
_BROKEN: dict[str, BackendUnavailableError] = {}  # plugins set aside, by entry-point name
_LOCK = threading.RLock()  # a plugin module may call register_backend while it is loaded
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
    if name not in _REGISTRY and name in _BROKEN:
        raise _BROKEN[name]
    if name not in _REGISTRY:
        raise BackendUnavailableError(
            f"unknown backend {name!r}: none by that name is installed here",
            hint=f"installed backends: {', '.join(backend_names())}; a plugin backend needs its package installed",
        )
    return _REGISTRY[name]


def backend_names() -> list[str]:
    _load_all()
    return list(_REGISTRY)


def plugin_problem(name: str) -> BackendUnavailableError | None:
    """Why the plugin backend `name` was set aside when the plugins loaded (None: it was not)."""
    _load_all()
    return _BROKEN.get(name) if name not in _REGISTRY else None


def is_builtin(name: str) -> bool:
    return name in BUILTIN_NAMES


def open_backend(folder: Path, manifest: Manifest, options: BackendOptions) -> BackendSession:
    opener: Opener = load_object(backend_spec(manifest.backend).runtime)
    if is_builtin(manifest.backend):
        return opener(folder, manifest, options)
    try:
        return opener(folder, manifest, options)
    except EdgekilnError:
        raise
    except Exception as exc:  # the plugin's own fault (or its device's): named, not an internal error
        raise BackendUnavailableError(
            f"backend plugin {manifest.backend!r} could not open {folder}: {type(exc).__name__}: {exc}",
            hint="check the device and the plugin's installation; report it to the plugin's authors if it persists",
        ) from None


def _load_all() -> None:
    """Built-ins first, then the plugins. A plugin that fails to load, or that takes a name already
    registered, is set aside with a warning: using it by name gives its error, and the other backends
    (the built-ins above all) keep working."""
    global _LOADED
    if _LOADED:
        return
    with _LOCK:
        if _LOADED:
            return
        for module_name in BUILTIN_MODULES:
            spec = import_module(module_name).SPEC
            _REGISTRY[spec.name] = spec
        for entry in entry_points(group=ENTRY_POINT_GROUP):
            problem = _plugin_problem(entry)
            if problem is not None:
                _BROKEN.setdefault(entry.name, problem)
                warnings.warn(f"{problem.message}; it is ignored ({problem.hint})", stacklevel=2)
        _LOADED = True


def _plugin_problem(entry) -> BackendUnavailableError | None:
    """Register the entry point's BackendSpec, or say why it cannot be."""
    package = getattr(getattr(entry, "dist", None), "name", None) or entry.value.partition(":")[0]
    where = f"backend plugin {entry.name!r} (package {package})"
    try:
        loaded = entry.load()
    except Exception as exc:
        return BackendUnavailableError(f"{where} failed to load: {exc}", hint="reinstall or uninstall that plugin")
    spec = loaded.SPEC if isinstance(loaded, ModuleType) else loaded
    if not isinstance(spec, BackendSpec) or spec.name != entry.name:
        return BackendUnavailableError(
            f"{where} does not provide a BackendSpec named {entry.name!r}",
            hint="its entry point must name a BackendSpec",
        )
    known = _REGISTRY.get(spec.name)
    if known is not None and known != spec:
        owner = "a built-in backend" if is_builtin(spec.name) else "another plugin"
        return BackendUnavailableError(
            f"{where} takes the name {spec.name!r} of {owner}", hint=f"uninstall {package} or rename its backend"
        )
    _REGISTRY[spec.name] = spec
    return None


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
