"""Old ONNX files: IR-3 graphs that list every initializer as an input, and opsets that today's
runtimes no longer implement. What a compile does to them is decided here, once, from the graph
alone (`plan`), so `edgekiln inspect MODEL.onnx` can say it before a compile does it (`apply`).

- Initializers listed among the graph inputs are constants: the graph the compile carries forward
  lists only the true inputs (backends then fold and fuse those weights), at IR version 4 or later.
- A default-domain opset below `MIN_OPSET` (ONNX Runtime dropped kernels such as AveragePool-1,
  BatchNormalization-6 or Add-6; its quantizer and TVM's importer want opset 10 or later) is
  upgraded to `TARGET_OPSET` with ONNX's own version converter. An operator the converter cannot
  carry forward stops the compile with one error naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import CompileError

MIN_OPSET = 10
TARGET_OPSET = 17
_DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class Conversion:
    ir_version: int
    opset: int  # the default domain's opset import
    listed_initializers: int  # initializers also listed among the graph inputs
    to_opset: int | None  # the opset the compile upgrades to; None when the file's is kept

    @property
    def changes_graph(self) -> bool:
        return bool(self.listed_initializers) or self.to_opset is not None

    def notes(self) -> tuple[str, ...]:
        notes = []
        if self.listed_initializers:
            notes.append(
                f"IR version {self.ir_version}: {self.listed_initializers} initializers listed among the "
                "graph inputs are kept as constants (dropped from the inputs of the compiled graph)"
            )
        if self.to_opset is not None:
            notes.append(f"opset {self.opset} upgraded to {self.to_opset} with ONNX's version converter")
        return tuple(notes)

    def report(self) -> dict:
        return {
            "ir_version": self.ir_version,
            "from_opset": self.opset,
            "to_opset": self.to_opset or self.opset,
            "upgraded": self.to_opset is not None,
            "initializers_dropped_from_inputs": self.listed_initializers,
        }


def default_opset(model) -> int:
    versions = [entry.version for entry in model.opset_import if entry.domain in _DEFAULT_DOMAINS]
    return max(versions, default=TARGET_OPSET)


def listed_initializers(model) -> list[str]:
    initializers = {init.name for init in model.graph.initializer}
    return [value.name for value in model.graph.input if value.name in initializers]


def plan(model) -> Conversion:
    """What a compile does to this graph (its weights need not be loaded)."""
    opset = default_opset(model)
    return Conversion(
        ir_version=model.ir_version,
        opset=opset,
        listed_initializers=len(listed_initializers(model)),
        to_opset=TARGET_OPSET if opset < MIN_OPSET else None,
    )


def apply(model, conversion: Conversion, name: str):
    """The graph the compile carries forward: true inputs only, at the planned opset. Upgrading
    reads the weights, so `model` must hold them when `conversion.to_opset` is set."""
    import onnx
    from onnx import helper

    if conversion.listed_initializers:
        initializers = {init.name for init in model.graph.initializer}
        kept = [value for value in model.graph.input if value.name not in initializers]
        del model.graph.input[:]
        model.graph.input.extend(kept)
        model.ir_version = max(model.ir_version, 4)
    if conversion.to_opset is None:
        return model
    try:
        converted = onnx.version_converter.convert_version(model, conversion.to_opset)
    except Exception as exc:  # the converter raises RuntimeError/ConvertError with C++ assertion text
        raise _not_convertible(model, conversion, name, str(exc)) from None
    needed = helper.find_min_ir_version_for(list(converted.opset_import), ignore_unknown=True)
    converted.ir_version = max(converted.ir_version, needed)
    del converted.graph.value_info[:]  # the converter leaves stale, sometimes untyped, entries behind
    try:  # its rules are not all right (Add-6 with broadcast and axis): shapes must still agree
        onnx.shape_inference.infer_shapes(converted, strict_mode=True)
    except Exception as exc:  # onnx.shape_inference.InferenceError
        detail = " ".join(str(exc).split())[:240]
        raise CompileError(
            f"{name}: ONNX's version converter turned opset {conversion.opset} into an inconsistent "
            f"opset-{conversion.to_opset} graph ({detail})",
            hint=f"re-export the model at opset {MIN_OPSET} or later from the framework it came from",
        ) from None
    return converted


def _not_convertible(model, conversion: Conversion, name: str, message: str) -> CompileError:
    culprit = _culprit(model, message)
    first = " ".join(message.split())[:200]
    dynamic = re.search(r"(\S+) Dimension is a param", message)
    if dynamic:  # broadcasting adapters (Add-6 and friends) need every shape fixed
        return CompileError(
            f"{name}: ONNX's version converter needs fixed shapes to upgrade opset {conversion.opset} "
            f"to {conversion.to_opset}, and dimension {dynamic.group(1)!r} is dynamic",
            hint="fix the input shapes first (python -m onnxruntime.tools.make_dynamic_shape_fixed "
            f"--dim_param {dynamic.group(1)} --dim_value 1 IN OUT), or re-export the model at "
            f"opset {MIN_OPSET} or later",
        )
    fix = (
        f"re-export the model at opset {MIN_OPSET} or later from the framework it came from, or replace "
        f"{culprit or 'that operator'} with standard operators (e.g. with onnx-graphsurgeon) and compile the new file"
    )
    if culprit is None:
        return CompileError(
            f"{name}: ONNX's version converter cannot upgrade opset {conversion.opset} to "
            f"{conversion.to_opset}: {first}",
            hint=fix,
        )
    return CompileError(
        f"{name}: operator {culprit} (opset {conversion.opset}) cannot be carried forward to opset "
        f"{conversion.to_opset}: ONNX's version converter has no rule for it",
        hint=fix,
    )


def _culprit(model, message: str) -> str | None:
    """The operator the converter failed on: one ONNX no longer defines (experimental ops such as
    ImageScaler or Crop), else the graph's operator its message names (longest name first)."""
    import onnx

    ops = sorted(
        {node.op_type for node in model.graph.node if node.domain in _DEFAULT_DOMAINS}, key=lambda op: (-len(op), op)
    )
    undefined = [op for op in ops if not onnx.defs.has(op)]
    if undefined:
        return undefined[0]
    return next((op for op in ops if op in message), None)
