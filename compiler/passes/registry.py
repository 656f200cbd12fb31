"""One registry of passes: the built-in ones and those third-party packages register.

A plugin package declares an entry point in the group `edgekiln.passes` whose object is a `Pass`
subclass; it becomes available under its `name`, and a recipe's `[[passes]]` runs it (make_pass).
"""

from __future__ import annotations

from importlib.metadata import entry_points

from pydantic import ValidationError

from ..errors import CompileError
from .base import Pass

_PASSES: dict[str, type[Pass]] = {}
_BUILTIN: set[str] = set()


def register_pass(cls: type[Pass]) -> type[Pass]:
    if cls.name in _PASSES and _PASSES[cls.name] is not cls:
        raise CompileError(
            f"two passes are registered as {cls.name!r}: {_PASSES[cls.name].__module__} and {cls.__module__}",
            hint="uninstall one of the plugins that provide it, or rename its pass",
        )
    _PASSES[cls.name] = cls
    return cls


def get_pass(name: str) -> type[Pass]:
    _load_builtins()
    if name not in _PASSES:
        for entry in entry_points(group="edgekiln.passes"):
            if entry.name == name:
                register_pass(_load_entry(entry))
    if name not in _PASSES:
        raise CompileError(f"unknown pass {name!r}", hint=f"registered passes: {', '.join(pass_names())}")
    return _PASSES[name]


def make_pass(name: str, options: dict) -> Pass:
    """A recipe's `[[passes]]` step: a plugin's graph pass, its options validated by its Config."""
    cls = get_pass(name)
    if name in _BUILTIN:
        raise CompileError(
            f"{name!r} is a built-in pass: the recipe's own sections run those",
            hint="[[passes]] names plugin passes (entry point group edgekiln.passes)",
        )
    if cls.lowers_to:
        raise CompileError(
            f"pass {name!r} lowers to a backend's files", hint="a backend's lowering comes from --backend"
        )
    try:
        config = cls.Config.model_validate(options)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "options"
        raise CompileError(
            f"pass {name!r}: option {where}: {first['msg']}",
            hint=f"its options are those of {cls.Config.__module__}.{cls.Config.__name__}",
        ) from None
    return cls(config)


def pass_names() -> list[str]:
    """Built-in and plugin passes (a plugin that fails to load is left out here; get_pass names its error)."""
    _load_builtins()
    for entry in entry_points(group="edgekiln.passes"):
        if entry.name not in _PASSES:
            try:
                register_pass(_load_entry(entry))
            except CompileError:
                pass
    return sorted(_PASSES)


def _load_entry(entry) -> type[Pass]:
    where = f"pass plugin {entry.name!r} ({entry.value})"
    try:
        loaded = entry.load()
    except Exception as exc:
        raise CompileError(f"{where} failed to load: {exc}", hint="reinstall or uninstall that plugin") from None
    if not (isinstance(loaded, type) and issubclass(loaded, Pass)) or getattr(loaded, "name", None) != entry.name:
        raise CompileError(f"{where} is not a Pass subclass named {entry.name!r}", hint="its entry point must name one")
    return loaded


def _load_builtins() -> None:
    if _BUILTIN:
        return
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

    _BUILTIN.update(name for name, cls in _PASSES.items() if cls.__module__.startswith("edgekiln."))
