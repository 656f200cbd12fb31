"""Versions of the tools that shaped an artifact (recorded in its manifest and in cache keys)."""

from __future__ import annotations

import platform
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version

_PACKAGES = ("edgekiln", "torch", "transformers", "onnx", "onnxscript", "onnxruntime", "tokenizers", "numpy", "pillow")


@lru_cache(maxsize=1)
def tool_versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            continue
    return found
