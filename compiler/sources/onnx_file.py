"""An `.onnx` file: validated, then compiled as raw tensors in and out."""

from __future__ import annotations

from pathlib import Path

from edgekiln.runtime.hashing import sha256_file, sha256_json
from edgekiln.runtime.manifest import Task

from ..errors import CompileError
from ..graph_io import graph_io, load_onnx
from ..input_shapes import InputShapes, plan_feeds, plan_shapes
from ..onnx_external import model_files, model_sha256
from ..onnx_reference import test_data_files
from ..onnx_upgrade import plan
from .base import ModelSource, SourceKind


def from_onnx_file(path: Path, input_shapes: InputShapes | None = None) -> ModelSource:
    model = load_onnx(path, load_external_data=False)  # the weights stay on disk; their files are hashed
    inputs, outputs = graph_io(model)  # initializers listed as inputs (IR 3) are constants, not inputs
    _check_numeric(path, inputs, outputs)
    shapes = plan_shapes(inputs, input_shapes)
    for name, dims in shapes.dims.items():
        if any(isinstance(dim, int) and not isinstance(dim, bool) and dim == 0 for dim in dims):
            raise CompileError(
                f"{path.name}: input {name} has a size 0 (shape {list(dims)}): it would hold nothing",
                hint="re-export the model with that axis dynamic, or at the size it takes",
            )
    files = {
        "model": model_sha256(path),
        "files": [file.name for file in model_files(path)],
        "test_data": {file.relative_to(path.parent).as_posix(): sha256_file(file) for file in test_data_files(path)},
    }
    return ModelSource(
        kind=SourceKind.ONNX_FILE,
        description=path.name,
        content_hash=sha256_json(files),
        task=Task.RAW,
        labels=None,
        make_feeds=lambda batch, sequence, rng: plan_feeds(shapes, batch, sequence, rng),
        onnx_path=path,
        notes=plan(model).notes(),
        shape_plan=shapes,
    )


def _check_numeric(path: Path, inputs, outputs) -> None:
    """Artifacts carry numbers (the runtime's checks, reference.npz without pickle, the server's datatypes):
    a string or other non-numeric input or output is refused here, not after a build that cannot run it."""
    for kind, specs in (("input", inputs), ("output", outputs)):
        for spec in specs:
            if spec.dtype not in _NUMERIC:
                values = "strings" if spec.dtype == "object" else f"{spec.dtype} values"
                raise CompileError(
                    f"{path.name}: {kind} {spec.name} holds {values}; artifacts take and give numeric tensors",
                    hint="move the string handling (tokenizing, label lookup) outside the ONNX graph",
                )


_NUMERIC = frozenset(
    {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64"}
)
