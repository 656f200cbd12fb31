"""An `.onnx` file: validated, then compiled as raw tensors in and out."""

from __future__ import annotations

from pathlib import Path

from edgekiln.runtime.hashing import sha256_file, sha256_json
from edgekiln.runtime.manifest import Task

from ..graph_io import graph_io, load_onnx
from ..input_shapes import InputShapes, plan_feeds, plan_shapes
from ..onnx_external import model_files, model_sha256
from ..onnx_reference import test_data_files
from ..onnx_upgrade import plan
from .base import ModelSource, SourceKind


def from_onnx_file(path: Path, input_shapes: InputShapes | None = None) -> ModelSource:
    model = load_onnx(path, load_external_data=False)  # the weights stay on disk; their files are hashed
    inputs, _ = graph_io(model)  # initializers listed as inputs (IR 3) are constants, not inputs
    shapes = plan_shapes(inputs, input_shapes)
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
