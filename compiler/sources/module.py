"""A `torch.nn.Module` handed to the Python API with example inputs."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edgekiln.runtime.hashing import sha256_json
from edgekiln.runtime.manifest import Task
from edgekiln.runtime.synthetic import BATCH_AXIS

from ..errors import CompileError
from .base import ModelSource, SourceKind, TorchSpec


def from_module(
    module: Any,
    example_inputs: Any,
    *,
    input_names: Sequence[str] | None,
    output_names: Sequence[str] | None,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None,
) -> ModelSource:
    import torch

    names, tensors = _normalise_examples(example_inputs, input_names)
    axes = (
        {name: dict(dynamic_axes.get(name, {})) for name in names}
        if dynamic_axes is not None
        else {name: {0: BATCH_AXIS} for name in names}
    )
    unknown = sorted(set(dynamic_axes or {}) - set(names))
    if unknown:
        raise CompileError(f"dynamic_axes names inputs {unknown} that are not among {list(names)}")
    module.eval()
    with torch.inference_mode():
        try:
            outputs = module(*tensors)
        except Exception as exc:  # the user's module and example inputs disagree: theirs to fix
            shapes = ", ".join(f"{name} {list(tensor.shape)}" for name, tensor in zip(names, tensors))
            raise CompileError(
                f"{type(module).__name__} fails on example_inputs ({shapes}): {type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}",
                hint="give example_inputs the module's forward takes (shapes, dtypes, order)",
            ) from None
    count = len(outputs) if isinstance(outputs, (tuple, list)) else 1
    output_names = tuple(output_names or [f"output_{i}" for i in range(count)])
    if len(output_names) != count:
        raise CompileError(f"output_names has {len(output_names)} names but the module returns {count} tensors")
    arrays = {name: tensor.detach().cpu().numpy() for name, tensor in zip(names, tensors)}
    return ModelSource(
        kind=SourceKind.TORCH_MODULE,
        description=type(module).__name__,
        content_hash=_module_hash(module, arrays, axes),
        task=Task.RAW,
        labels=None,
        make_feeds=lambda batch, sequence, rng: _resize(arrays, axes, batch, rng),
        torch=TorchSpec(
            build=lambda: module.eval(),
            input_names=names,
            output_names=output_names,
            dynamic_axes=axes,
            example=lambda: tuple(tensors),
        ),
    )


def _normalise_examples(example_inputs: Any, input_names: Sequence[str] | None) -> tuple[tuple[str, ...], tuple]:
    import torch

    if example_inputs is None:
        raise CompileError(
            "compiling a torch.nn.Module needs example_inputs (a tensor, a tuple of tensors, "
            "or a dict of name -> tensor)"
        )
    if isinstance(example_inputs, torch.Tensor):
        example_inputs = (example_inputs,)
    if isinstance(example_inputs, Mapping):
        names, tensors = tuple(example_inputs), tuple(example_inputs.values())
    else:
        tensors = tuple(example_inputs)
        names = tuple(input_names or [f"input_{i}" for i in range(len(tensors))])
    if len(names) != len(tensors):
        raise CompileError(f"input_names has {len(names)} names for {len(tensors)} example inputs")
    bad = [name for name, tensor in zip(names, tensors) if not isinstance(tensor, torch.Tensor)]
    if bad:
        raise CompileError(f"example input {bad[0]!r} is not a torch.Tensor")
    return names, tensors


def _resize(
    arrays: dict[str, np.ndarray], axes: dict[str, dict[int, str]], batch: int, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Example-like inputs with `batch` rows on every batch axis (values drawn like the example's)."""
    feeds = {}
    for name, array in arrays.items():
        shape = [batch if axes[name].get(axis) == BATCH_AXIS else size for axis, size in enumerate(array.shape)]
        if array.dtype.kind == "f":
            feeds[name] = (rng.standard_normal(shape) * (array.std() or 1.0) + array.mean()).astype(array.dtype)
        else:
            low, high = int(array.min()), int(array.max())
            feeds[name] = rng.integers(low, high + 1, size=shape).astype(array.dtype)
    return feeds


def _module_hash(module: Any, arrays: dict[str, np.ndarray], axes: dict) -> str:
    digest = hashlib.sha256(f"{type(module).__module__}.{type(module).__qualname__}\n{module}".encode())
    for key, value in module.state_dict().items():
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().numpy().tobytes())
    shapes = {name: [list(array.shape), str(array.dtype)] for name, array in arrays.items()}
    return sha256_json({"module": digest.hexdigest(), "inputs": shapes, "axes": axes})
