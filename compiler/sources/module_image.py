"""A `torch.nn.Module` image classifier with a declared preprocessing (`Recipe.source.image`).

The module takes the spec's tensor (float32, [batch, 3, H, W] or [batch, H, W, 3]) and returns
logits; the spec goes into the artifact, so the device runs from images like a Hugging Face model."""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from edgekiln.runtime.hashing import sha256_json
from edgekiln.runtime.images.spec import ImagePreprocessSpec
from edgekiln.runtime.manifest import Task
from edgekiln.runtime.synthetic import BATCH_AXIS

from ..errors import CompileError
from .base import ModelSource, SourceKind, TorchSpec
from .hf_image import synthetic_images
from .module import _module_hash


def from_image_module(
    module: Any, spec: ImagePreprocessSpec, labels: tuple[str, ...] | None, task: Task | None, output_names
) -> ModelSource:
    import torch

    if task not in (None, Task.IMAGE_CLASSIFICATION):
        raise CompileError(
            f"a declared image preprocessing makes an image classifier, but the task is {task.value}",
            hint="drop --task, or set it to image-classification",
        )
    example = synthetic_images(spec, 2, 0, np.random.default_rng(0))
    module.eval()
    shape = list(example[spec.input].shape)
    try:
        with torch.inference_mode():
            logits = module(torch.from_numpy(example[spec.input]))
    except Exception as exc:  # noqa: BLE001 - the user's module: its own error, named, in one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise CompileError(
            f"{type(module).__name__} failed on the images its declared preprocessing gives (float32 {shape}, "
            f"{spec.layout.value}, 3 channels): {type(exc).__name__}: {first}",
            hint="declare the layout and size the module takes (image.layout, image.size / crop); "
            "edgekiln's images are RGB, 3 channels",
        ) from None
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise CompileError(
            f"{type(module).__name__} must return one logits tensor [batch, classes] for images, "
            f"found {type(logits).__name__}{list(getattr(logits, 'shape', []))}"
        )
    if labels is not None and len(labels) != logits.shape[1]:
        raise CompileError(
            f"{len(labels)} labels declared for {logits.shape[1]} model outputs",
            hint="give one label per class, in output order",
        )
    axes = {spec.input: {0: BATCH_AXIS}}
    return ModelSource(
        kind=SourceKind.TORCH_MODULE,
        description=type(module).__name__,
        content_hash=sha256_json(
            {"module": _module_hash(module, example, axes), "image": spec.model_dump(mode="json"), "labels": labels}
        ),
        task=Task.IMAGE_CLASSIFICATION,
        labels=labels,
        make_feeds=partial(synthetic_images, spec),
        torch=TorchSpec(
            build=lambda: module.eval(),
            input_names=(spec.input,),
            output_names=tuple(output_names or ("logits",)),
            dynamic_axes=axes,
            example=lambda: (torch.from_numpy(example[spec.input]),),
        ),
        image=spec,
    )
