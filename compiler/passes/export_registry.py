"""The dynamo exporter's table of ATen -> ONNX functions, built once per process instead of per export.

torch.onnx.export rebuilds this registry from onnxscript's torchlib on every call (about half a second:
each function's ONNX IR is made again), though it reads it only. While `reused_registry()` is active,
each export gets a fresh copy of one registry built for its opset; the copy is keyed by the opset and
by the torchlib functions registered when it is asked for, so a function registered later (a custom
torchlib op) makes a new registry rather than a stale hit."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_BUILT: dict[tuple, object] = {}  # (opset, torchlib fingerprint) -> ONNXRegistry
_LOCK = threading.Lock()


def torchlib_fingerprint() -> tuple:
    """What the registry is built from: onnxscript's registered torchlib functions (and torch's own
    list), by qualified name and identity; cheap next to building the registry."""
    from onnxscript.function_libs.torch_lib import ops  # noqa: F401  (registers torchlib's functions)
    from onnxscript.function_libs.torch_lib.registration import default_registry
    from torch.onnx._internal.exporter._torchlib import _torchlib_registry

    functions = tuple(
        (name, tuple(map(id, overloads.overloads)), tuple(map(id, overloads.complex)))
        for name, overloads in default_registry.items()
    )
    return functions, tuple(map(id, _torchlib_registry.get_torchlib_ops()))


def registry_for(opset: int):
    """A fresh copy of the registry torch.onnx would build for `opset` (built once per fingerprint)."""
    from torch.onnx._internal.exporter import _registration

    key = (opset, torchlib_fingerprint())
    with _LOCK:
        built = _BUILT.get(key)
        if built is None:
            built = _BUILT[key] = _original().__func__(_registration.ONNXRegistry, opset_version=opset)
    copy = _registration.ONNXRegistry()
    copy._opset_version = built._opset_version
    copy.functions = {target: list(metas) for target, metas in built.functions.items()}  # register_op appends
    return copy


_ORIGINAL = None  # ONNXRegistry.from_torchlib as torch defines it


def _original():
    global _ORIGINAL
    if _ORIGINAL is None:
        from torch.onnx._internal.exporter import _registration

        _ORIGINAL = _registration.ONNXRegistry.__dict__["from_torchlib"]
    return _ORIGINAL


@contextlib.contextmanager
def reused_registry() -> Iterator[None]:
    """Make torch.onnx.export take its registry from `registry_for` while the block runs; where torch
    or onnxscript lay their registries out otherwise (another version), exports build their own."""
    try:
        from torch.onnx._internal.exporter import _registration

        cls, original, opset = _registration.ONNXRegistry, _original(), _default_opset()
        torchlib_fingerprint()
    except (ImportError, AttributeError, KeyError):
        cls = original = None
    if cls is None or cls.__dict__["from_torchlib"] is not original:  # unknown layout, or already patched
        yield
        return
    cls.from_torchlib = classmethod(lambda _cls, opset_version=opset: registry_for(opset_version))
    try:
        yield
    finally:
        cls.from_torchlib = original


def _default_opset() -> int:
    from torch.onnx._internal.exporter import _constants

    return _constants.TORCHLIB_OPSET
