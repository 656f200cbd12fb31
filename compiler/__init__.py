"""edgekiln compiler: trace, verify and lower a model into an artifact for a target profile.

Names are imported on first use, so that a light submodule (a TVM build worker imports
`edgekiln.compiler.tvm_build.tuning`) does not pay for the whole compiler.
"""

from importlib import import_module

_EXPORTS = {
    "CompileResult": ".api",
    "compile": ".api",
    "CompileError": ".errors",
    "ExportError": ".errors",
    "FidelityError": ".errors",
    "Exporter": ".passes.export_onnx",
    "FidelityConfig": ".fidelity",
    "Recipe": ".recipe",
    "Pooling": ".sources",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name], __name__), name)
