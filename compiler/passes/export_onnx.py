"""Trace a torch model to ONNX with dynamic batch/sequence axes."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import shutil
import warnings
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import Field

from ..errors import ExportError
from ..onnx_external import consolidate
from .base import MODEL_FILE, BuildState, Pass, PassConfig
from .export_patches import patched_for_export, refusal
from .export_registry import reused_registry
from .registry import register_pass


class Exporter(str, Enum):
    AUTO = "auto"  # dynamo, falling back to torchscript when dynamo cannot trace the model
    DYNAMO = "dynamo"
    TORCHSCRIPT = "torchscript"


class ExportConfig(PassConfig):
    exporter: Exporter = Exporter.AUTO
    opset: int = Field(default=18, ge=14, le=23)


@register_pass
class ExportOnnx(Pass):
    name = "export_onnx"
    version = 6  # 2: nodes named after their modules; 3: embedding normalisation TVM can import;
    # 4: past 2 GB the dynamo export is kept (nodes renamed in the graph only), weights in one model.onnx.data;
    # 5: an export that fixed a dynamic axis is refused; 6: export patches keep sequence-sized code symbolic
    Config = ExportConfig
    changes_model = True

    def check_preconditions(self, state: BuildState) -> None:
        if state.source.torch is None:
            raise ExportError(f"{state.source.description} is not a torch model; nothing to export")

    def input_key(self, state: BuildState) -> str:
        return state.source.content_hash

    def run(self, state: BuildState, out_dir: Path) -> dict[str, Any]:
        import torch

        spec = state.source.torch
        module = spec.build()
        refused = refusal(module)
        if refused:
            raise ExportError(
                f"cannot export {state.source.description} with dynamic axes: {refused[0]}", hint=refused[1]
            )
        example = spec.example()
        order = (
            [Exporter.DYNAMO, Exporter.TORCHSCRIPT] if self.config.exporter is Exporter.AUTO else [self.config.exporter]
        )
        failures: list[str] = []
        for exporter in order:
            _empty(out_dir)  # a failed attempt may have left weights behind
            try:
                with _quiet(), torch.inference_mode(False), torch.no_grad(), patched_for_export(module):
                    _EXPORTERS[exporter](module, example, spec, out_dir / MODEL_FILE, self.config.opset)
                fixed = fixed_axes(out_dir / MODEL_FILE, spec.dynamic_axes)
                if fixed:  # the trace specialised a dynamic axis: the graph would take only that size
                    failures.append(
                        f"{exporter.value}: the model's code fixes {fixed} "
                        "(it computes with the size as a Python number)"
                    )
                    continue
                if exporter is Exporter.DYNAMO:
                    name_nodes_after_modules(out_dir / MODEL_FILE)
                consolidate(out_dir / MODEL_FILE)  # past 2 GB: the weights in one model.onnx.data
            except Exception as exc:  # every exporter failure is reported with its cause
                failures.append(f"{exporter.value}: {_summarise(exc)}")
                continue
            return {
                "exporter": exporter.value,
                "opset": self.config.opset,
                "fallback_reasons": failures,
                "dynamic_axes": {
                    name: {str(k): v for k, v in axes.items()} for name, axes in spec.dynamic_axes.items()
                },
            }
        eager = _eager_failure(module, example)
        if eager is not None:  # no exporter can trace what does not run
            raise ExportError(
                f"{state.source.description} does not run in PyTorch on example inputs: {eager}",
                hint="the model needs something a plain forward call does not give it (e.g. a language or a "
                "mode set in code): set it, save the folder again, and compile that",
            )
        raise ExportError(
            f"ONNX export of {state.source.description} failed: {' | '.join(failures)}",
            hint="try another --exporter or --opset; if an operator is unsupported, replace that module "
            "or register a custom ONNX symbolic for it",
        )


def _export_dynamo(module, example, spec, path: Path, opset: int) -> None:
    import torch

    # Axis names, not torch.export.Dim objects: the exporter traces them as Dim.DYNAMIC (an error if the
    # code fixes one) and names the graph's axes after them. With named Dims, a guard sympy cannot prove
    # for every length (Funnel's 2*((s-1)//2) < s) makes torch.onnx re-export under its suggested fix
    # ("s = 2*_s"), and the graph silently takes only even lengths.
    shapes = tuple(dict(spec.dynamic_axes[input_name]) for input_name in spec.input_names)
    example = tuple(_at_least_two(tensor, spec.dynamic_axes[name]) for name, tensor in zip(spec.input_names, example))
    with reused_registry():  # the ATen -> ONNX table, built once per process
        torch.onnx.export(
            module,
            example,
            str(path),
            input_names=list(spec.input_names),
            output_names=list(spec.output_names),
            dynamic_shapes=shapes,
            opset_version=opset,
            dynamo=True,
            external_data=False,
            verbose=False,
        )


def _export_torchscript(module, example, spec, path: Path, opset: int) -> None:
    import torch

    torch.onnx.export(
        module,
        example,
        str(path),
        input_names=list(spec.input_names),
        output_names=list(spec.output_names),
        dynamic_axes=dict(spec.dynamic_axes),
        opset_version=min(opset, 20),
        dynamo=False,
    )


_EXPORTERS = {Exporter.DYNAMO: _export_dynamo, Exporter.TORCHSCRIPT: _export_torchscript}


def fixed_axes(path: Path, dynamic_axes) -> str | None:
    """The first declared dynamic axis the exported graph has as a fixed size ("the sequence axis of
    input_ids at 16"), or None when every one stayed symbolic."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        for axis, name in dynamic_axes.get(value.name, {}).items():
            if int(axis) < len(dims) and dims[int(axis)].HasField("dim_value"):
                return f"the {name} axis of {value.name} at {dims[int(axis)].dim_value}"
    return None


def name_nodes_after_modules(path: Path) -> None:
    """Name each node after the module it came from ("…layer.0.attention.self.query/MatMul"), so
    per-layer diagnostics speak the model's language, and drop the exporter's metadata (stack
    traces with local paths would make the artifact depend on where it was built)."""
    import ast

    import onnx

    model = onnx.load(str(path), load_external_data=False)  # the graph only: external weights stay as written
    used: set[str] = set()
    for node in model.graph.node:
        scopes = next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), None)
        if scopes:
            parts = [part for part in ast.literal_eval(scopes)[:-1] if part]
            base = f"{parts[-1] if parts else 'model'}/{node.op_type}"
            name, count = base, 1
            while name in used:
                count += 1
                name = f"{base}_{count}"
            node.name = name
        used.add(node.name)
        del node.metadata_props[:]
    onnx.save(model, str(path))


def _empty(folder: Path) -> None:
    for entry in folder.iterdir():
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def _at_least_two(tensor, axes: dict[int, str]):
    """torch.export specialises dynamic axes of size 1; repeat such axes to size 2 for tracing."""
    for axis in axes:
        if tensor.shape[axis] == 1:
            tensor = tensor.repeat_interleave(2, dim=axis)
    return tensor


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_CULPRITS = (r"aten[:.]{1,2}[A-Za-z_][\w.]*", r"Unsupported[^\n]*", r"[\w.]+ is not supported[^\n]*")


def _summarise(exc: Exception) -> str:
    """The line of an exporter error (or of its causes) that names the failing operator or module."""
    chain, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        chain.append(_ANSI.sub("", f"{type(exc).__name__}: {exc}"))
        exc = exc.__cause__ or exc.__context__
    for pattern in _CULPRITS:
        for text in chain:
            match = re.search(pattern, text)
            if match:
                line = next(line for line in text.splitlines() if match.group(0) in line)
                return line.strip()[:400]
    return chain[0].splitlines()[0][:400]


@contextlib.contextmanager
def _quiet():
    """Exporters print progress, graph dumps (from C++, straight to file descriptor 2) and many
    deprecation warnings; a compile shows only its own messages and the summarised error."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with (
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
            _silence_fd(1),
            _silence_fd(2),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


@contextlib.contextmanager
def _silence_fd(fd: int):
    saved = os.dup(fd)
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _eager_failure(module, example) -> str | None:
    """Why the module fails on its example inputs in plain PyTorch, or None when it runs."""
    import torch

    try:
        with _quiet(), torch.no_grad():
            module(*example)
    except Exception as exc:  # noqa: BLE001 - the model's own error, reported as such
        return _summarise(exc)
    return None
