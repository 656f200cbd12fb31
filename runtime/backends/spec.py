"""What a backend is, in one small record: `BackendSpec`.

A backend is one runtime module that defines `SPEC` (and its `open_session`), plus the compiler
modules its spec names. The runtime never imports compiler code: compiler-side parts are named as
"module:attribute" strings and imported only when a compile needs them. Third-party backends publish
a `BackendSpec` through the `edgekiln.backends` entry-point group; built-in ones are found the same way
(`registry.py`), so a new backend touches its own files plus its registration only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from types import MappingProxyType
from typing import Any

from ..errors import EdgekilnError
from ..manifest import BACKEND_NAME_PATTERN as NAME_PATTERN

_NAME = re.compile(NAME_PATTERN)


@dataclass(frozen=True)
class QuantizerSpec:
    """How a backend makes int8 in one mode: the compiler factory that returns the quantize pass."""

    factory: str  # "module:function" -> function(context) -> Pass
    needs_calibration: bool


@dataclass(frozen=True)
class BackendSpec:
    name: str
    description: str
    runtime: str  # "module:function" -> open_session(folder, manifest, options) -> BackendSession
    lowering: str | None = None  # "module:function" -> function(context) -> Pass; None: the ONNX file ships
    quantizers: Mapping[str, QuantizerSpec] = field(default_factory=lambda: MappingProxyType({}))
    finishing: str | None = None  # "module:function" -> function(context) -> Pass | None, after lowering and int8
    precisions: tuple[str, ...] = ("fp32",)  # float precisions it compiles (int8 comes from `quantizers`)
    # a float precision it runs on an x86 CPU, and the ISA features (any one) the target's CPU needs for it
    cpu_precision_isa: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    target_fields: tuple[str, ...] = ()  # target-profile fields it needs, e.g. ("tvm_target",)
    accelerators: tuple[str, ...] = ("none", "cuda")  # the target accelerators it runs on ("none": the CPU)
    options: str | None = None  # "module:Class": the pydantic model of its own recipe options
    opened_files: str | None = None  # "module:function(folder, manifest)": files it opens besides model_file
    profiler: str | None = None  # "module:function" -> per-operator times (runtime/profile), for bench --profile
    emulation_wheels: tuple[str, ...] | None = None  # aarch64 packages to emulate it; None: cannot be emulated
    emulation_refusal: str = "this backend cannot be checked under emulation"
    # a plugin's artifact is opened with its runtime at compile time and checked against the reference
    # outputs (as `edgekiln verify` does); False for a device the build machine lacks (verify on the device)
    checked_at_compile: bool = True

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise EdgekilnError(f"backend name {self.name!r} is not valid", hint=f"use a name matching {NAME_PATTERN}")
        object.__setattr__(self, "quantizers", MappingProxyType(dict(self.quantizers)))
        object.__setattr__(self, "cpu_precision_isa", MappingProxyType(dict(self.cpu_precision_isa)))

    def quantize_modes(self) -> tuple[str, ...]:
        return tuple(self.quantizers)


def load_object(reference: str) -> Any:
    """Import "package.module:attribute"."""
    module_name, _, attribute = reference.partition(":")
    return getattr(import_module(module_name), attribute)
