"""Turning what the user passed (a folder, a file, a module) into a `ModelSource`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from edgekiln.runtime.manifest import Task

from ..errors import CompileError
from .base import ModelSource, SourceKind, TorchSpec, is_timm, is_timm_folder
from .wrappers import Pooling

_FILE_SUFFIXES = (".onnx", ".pt", ".pth", ".bin", ".safetensors")  # a file's name, not a hub id
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")


def resolve_source(
    model: Any,
    *,
    work_dir: Path,
    task: Task | None = None,
    pooling: Pooling | None = None,
    example_inputs: Any = None,
    input_names=None,
    output_names=None,
    dynamic_axes=None,
    image=None,
    labels=None,
    input_shapes=None,
    weights=None,
) -> ModelSource:
    if input_shapes and not (isinstance(model, (str, Path)) and str(model).lower().endswith(".onnx")):
        raise CompileError(
            "--input-shape declares the shapes of an ONNX file's inputs",
            hint="drop it: torch and Hugging Face models are exported with their own shapes",
        )
    if weights is not None or is_timm(model) or is_timm_folder(model):
        from .timm_folder import from_timm

        return from_timm(model, weights, labels=labels, task=task, image=image)
    if _is_torch_module(model) and image is not None:
        from .module_image import from_image_module

        return from_image_module(model, image, labels, task, output_names)
    if image is not None or labels is not None:
        onnx = isinstance(model, (str, os.PathLike)) and str(model).lower().endswith(".onnx")
        raise CompileError(
            "a declared image preprocessing and labels apply to a torch.nn.Module or timm image classifier"
            + (f"; {model} is an ONNX file, compiled as raw tensors in and out" if onnx else ""),
            hint="an ONNX file's outputs are its tensors: map them to labels in your code"
            if onnx
            else "a Hugging Face folder brings its own (preprocessor_config.json, id2label)",
        )
    if _is_torch_module(model):
        from .module import from_module

        return from_module(
            model, example_inputs, input_names=input_names, output_names=output_names, dynamic_axes=dynamic_axes
        )
    if not isinstance(model, (str, Path)):
        raise CompileError(
            f"cannot compile a {type(model).__name__}",
            hint="pass a Hugging Face model folder, an .onnx file or a torch.nn.Module",
        )
    path = Path(model).expanduser()
    if not path.exists():
        if isinstance(model, str) and _HUB_ID.match(model) and path.suffix.lower() not in _FILE_SUFFIXES:
            raise CompileError(
                f"{model!r} is not a local folder and edgekiln never downloads from the Hugging Face Hub",
                hint=f"on a connected machine run `huggingface-cli download {model} --local-dir DIR`, "
                "copy DIR here and pass its path",
            )
        raise CompileError(f"model path {path} does not exist")
    if path.is_file():
        if path.suffix.lower() != ".onnx":
            raise CompileError(
                f"{path} is a file but not an .onnx model", hint="pass a Hugging Face model folder or an .onnx file"
            )
        from .onnx_file import from_onnx_file

        return from_onnx_file(path, input_shapes)
    from .hf import load_hf_folder

    return load_hf_folder(path, task=task, pooling=pooling, work_dir=work_dir)


def _is_torch_module(model: Any) -> bool:
    try:
        import torch
    except ImportError:
        return False
    return isinstance(model, torch.nn.Module)


__all__ = ["ModelSource", "Pooling", "SourceKind", "TorchSpec", "resolve_source"]
