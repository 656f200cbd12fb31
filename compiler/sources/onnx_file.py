"""An `.onnx` file: validated, then compiled as raw tensors in and out."""
from __future__ import annotations

from pathlib import Path

from edgekiln.runtime.hashing import sha256_json
from edgekiln.runtime.manifest import Task
from edgekiln.runtime.synthetic import make_tensor_feeds

from ..graph_io import graph_io, load_onnx
from .base import ModelSource, SourceKind


def from_onnx_file(path: Path) -> ModelSource:
    model = load_onnx(path)
    inputs, _ = graph_io(model)
    files = {"model": _hash_with_external_data(path)}
    return ModelSource(
        kind=SourceKind.ONNX_FILE,
        description=path.name,
        content_hash=sha256_json(files),
        task=Task.RAW,
        labels=None,
        make_feeds=lambda batch, sequence, rng: make_tensor_feeds(inputs, batch, sequence, rng),
        onnx_path=path,
    )


def _hash_with_external_data(path: Path) -> dict[str, str]:
    from edgekiln.runtime.hashing import sha256_file

    hashes = {path.name: sha256_file(path)}
    for sibling in sorted(path.parent.glob(path.name + ".data")):
        hashes[sibling.name] = sha256_file(sibling)
    return hashes
