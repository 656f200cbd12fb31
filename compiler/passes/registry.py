"""One registry of passes: the built-in ones and those third-party packages register.

A plugin package declares an entry point in the group `edgekiln.passes` whose object is a `Pass`
subclass; it becomes available under its `name`.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from ..errors import CompileError
from .base import Pass

_PASSES: dict[str, type[Pass]] = {}


def register_pass(cls: type[Pass]) -> type[Pass]:
    if cls.name in _PASSES and _PASSES[cls.name] is not cls:
        raise CompileError(
            f"two passes are registered as {cls.name!r}: {_PASSES[cls.name].__module__} and {cls.__module__}"
        )
    _PASSES[cls.name] = cls
    return cls


def get_pass(name: str) -> type[Pass]:
    _load_builtins()
    if name not in _PASSES:
        for entry in entry_points(group="edgekiln.passes"):
            if entry.name == name:
                register_pass(entry.load())
    if name not in _PASSES:
        raise CompileError(f"unknown pass {name!r}", hint=f"registered passes: {', '.join(pass_names())}")
    return _PASSES[name]


def pass_names() -> list[str]:
    _load_builtins()
    return sorted(_PASSES)


def _load_builtins() -> None:
    from . import (  # noqa: F401
        check_onnx,
        export_onnx,
        lower_openvino,
        lower_tvm,
        openvino_static,
        ort_optimize,
        quantize,  # (importing registers them; none imports its tool)
        quantize_openvino,
        verify_fidelity,
    )
