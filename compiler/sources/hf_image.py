"""A Hugging Face image-classification folder: `config.json`, weights and `preprocessor_config.json`.

The model's own image processor (loaded with transformers) is read into an `ImagePreprocessSpec`,
which the artifact carries, so the device reproduces the processor's tensors without transformers.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from edgekiln.runtime.hashing import sha256_json
from edgekiln.runtime.images.preprocess import normalise
from edgekiln.runtime.images.spec import ChannelOrder, ImagePreprocessSpec, Interpolation, ResizeMode
from edgekiln.runtime.manifest import Task
from edgekiln.runtime.synthetic import BATCH_AXIS

from ..errors import CompileError
from .base import ModelSource, SourceKind, TorchSpec
from .remote_code import NO_REMOTE_CODE

INPUT = "pixel_values"
# Processors whose steps are resize / centre crop / rescale / normalise (+ ConvNeXt's crop_pct,
# MobileViT's channel flip and EfficientNet's offset and second division by std, both folded into the
# spec's mean and std), which the spec reproduces (EfficientNet's up to float rounding, ~5e-7).
# Others are refused, not guessed.
SUPPORTED = (
    "ViTImageProcessor",
    "DeiTImageProcessor",
    "BeitImageProcessor",
    "ConvNextImageProcessor",
    "MobileNetV1ImageProcessor",
    "MobileNetV2ImageProcessor",
    "BitImageProcessor",
    "CLIPImageProcessor",
    "MobileViTImageProcessor",
    "SiglipImageProcessor",
    "Dinov2ImageProcessor",
    "EfficientNetImageProcessor",
)
_RESAMPLE = {0: Interpolation.NEAREST, 1: Interpolation.LANCZOS, 2: Interpolation.BILINEAR, 3: Interpolation.BICUBIC}


def load_hf_image_folder(folder: Path, config: dict, task: Task, labels: tuple[str, ...] | None) -> ModelSource:
    channels = config.get("num_channels", 3)
    if channels != 3:  # noqa: PLR2004 - the runtime's images are RGB
        raise CompileError(
            f"{folder.name} takes {channels}-channel images (config.json num_channels); edgekiln's image "
            "preprocessing gives 3 (RGB)",
            hint="fine-tune a 3-channel model, or compile it as an ONNX file fed raw tensors",
        )
    spec = image_spec(folder)
    settings = {"task": task.value, "image": spec.model_dump(mode="json")}
    from .hf import folder_hashes

    return ModelSource(
        kind=SourceKind.HF_FOLDER,
        description=folder.resolve().name,
        content_hash=sha256_json({"files": folder_hashes(folder), "settings": settings}),
        task=task,
        labels=labels,
        make_feeds=partial(synthetic_images, spec),
        torch=image_torch_spec(spec, partial(_build_module, folder, task)),
        image=spec,
        notes=(image_note(spec),),
    )


def image_torch_spec(spec: ImagePreprocessSpec, build) -> TorchSpec:
    """How to trace an image classifier that takes the spec's tensor and returns logits."""
    return TorchSpec(
        build=build,
        input_names=(spec.input,),
        output_names=("logits",),
        dynamic_axes={spec.input: {0: BATCH_AXIS}},
        example=partial(_example, spec),
    )


def image_note(spec: ImagePreprocessSpec, origin: str = "images") -> str:
    """The build note that says how images become the model's tensor."""
    height, width = spec.output_size()
    crop = f", centre crop {spec.crop[0]}x{spec.crop[1]}" if spec.crop else ""
    return (
        f"{origin}: resize {spec.resize.value} {list(spec.size)} ({spec.interpolation.value}){crop} -> {height}x{width}"
    )


def image_spec(folder: Path) -> ImagePreprocessSpec:
    """The folder's image processor as a spec (its class defaults filled in by transformers)."""
    processor = _load_processor(folder)
    kind = _kind(processor)
    if kind not in SUPPORTED:
        raise CompileError(
            f"{folder}: its image processor {kind} is not one edgekiln reproduces",
            hint=f"supported: {', '.join(SUPPORTED)}",
        )
    size, crop = processor.size, _crop(processor)
    resize, sizes = _resize(folder, size)
    if kind == "ConvNextImageProcessor" and not size.shortest_edge and getattr(processor, "do_resize", True):
        raise CompileError(  # transformers' own processor refuses it too: its crop_pct needs an edge
            f"{folder}: its ConvNextImageProcessor gives size {dict(size)}; ConvNeXt resizes by "
            "shortest_edge (then crops crop_pct)",
            hint='set "size": {"shortest_edge": N} in preprocessor_config.json',
        )
    if kind == "ConvNextImageProcessor" and size.shortest_edge:  # crop_pct: resize larger, then crop
        edge = size.shortest_edge
        resize, sizes = (
            (ResizeMode.SHORTEST_EDGE, (int(edge / processor.crop_pct),))
            if edge < 384
            else (ResizeMode.EXACT, (edge, edge))
        )
        crop = (edge, edge) if edge < 384 else None
    if not getattr(processor, "do_resize", True):  # ConvNeXt's crop_pct crop is part of its resize: gone too
        resize, sizes, crop = ResizeMode.NONE, (), _crop(processor)
    resample = int(getattr(processor, "resample", 2))
    if resample not in _RESAMPLE:
        raise CompileError(
            f"{folder}: resampling filter {resample} of its image processor is not supported",
            hint="use nearest (0), lanczos (1), bilinear (2) or bicubic (3)",
        )
    mean, std = _normalisation(processor, kind)
    try:
        return ImagePreprocessSpec(
            input=INPUT,
            resize=resize,
            size=sizes,
            interpolation=_RESAMPLE[resample],
            crop=crop,
            rescale=float(processor.rescale_factor) if getattr(processor, "do_rescale", False) else 1.0,
            mean=mean,
            std=std,
            channel_order=ChannelOrder.BGR if getattr(processor, "do_flip_channel_order", False) else ChannelOrder.RGB,
        )
    except ValidationError as exc:
        raise CompileError(
            f"{folder}: its image processor does not give one fixed input size ({exc.errors()[0]['msg']})",
            hint="set crop_size (with do_center_crop) or an exact size in preprocessor_config.json",
        ) from None


def _normalisation(processor, kind: str) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """(mean, std) after the rescale, or (None, None). EfficientNet's processor may subtract 1 after
    rescaling (`rescale_offset`) and divides by std once more (`include_top`): x*r - o, then (· - mean) /
    std, then / std is (x*r - (o + mean)) / std², the same arithmetic up to float rounding."""
    normalize = bool(getattr(processor, "do_normalize", False))
    mean = _triple(processor.image_mean) if normalize else (0.0, 0.0, 0.0)
    std = _triple(processor.image_std) if normalize else (1.0, 1.0, 1.0)
    if kind != "EfficientNetImageProcessor":
        return (mean, std) if normalize else (None, None)
    offset = 1.0 if getattr(processor, "do_rescale", False) and getattr(processor, "rescale_offset", False) else 0.0
    again = _triple(processor.image_std) if getattr(processor, "include_top", False) else (1.0, 1.0, 1.0)
    mean = tuple(m + offset for m in mean)
    std = tuple(s * t for s, t in zip(std, again, strict=True))
    return (None, None) if mean == (0.0, 0.0, 0.0) and std == (1.0, 1.0, 1.0) else (mean, std)


def _load_processor(folder: Path):
    if not (folder / "preprocessor_config.json").is_file():
        raise CompileError(
            f"{folder} has no preprocessor_config.json, which says how images are prepared",
            hint="save the processor beside the model: image_processor.save_pretrained(folder)",
        )
    from transformers import AutoImageProcessor
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "falling back to the PIL backend": the one edgekiln reproduces
    try:
        return AutoImageProcessor.from_pretrained(str(folder), local_files_only=True, **NO_REMOTE_CODE)
    except Exception as exc:  # transformers raises many types for a broken processor config
        raise CompileError(
            f"cannot load the image processor in {folder}: {str(exc).splitlines()[0]}",
            hint="re-save it with image_processor.save_pretrained(folder)",
        ) from None
    finally:
        hf_logging.set_verbosity(verbosity)


def _kind(processor) -> str:
    name = type(processor).__name__
    for suffix in ("Pil", "Fast"):
        name = name.removesuffix(suffix)
    return name


def _resize(folder: Path, size) -> tuple[ResizeMode, tuple[int, ...]]:
    if getattr(size, "longest_edge", None) or getattr(size, "max_height", None):
        raise CompileError(
            f"{folder}: its image processor resizes with a longest edge or a maximum size, which "
            "gives inputs of varying size",
            hint="use a model with an exact or shortest-edge size",
        )
    if size.height and size.width:
        return ResizeMode.EXACT, (int(size.height), int(size.width))
    if size.shortest_edge:
        return ResizeMode.SHORTEST_EDGE, (int(size.shortest_edge),)
    raise CompileError(f"{folder}: its image processor's size {size} has no height/width or shortest_edge")


def _crop(processor) -> tuple[int, int] | None:
    if not getattr(processor, "do_center_crop", False) or getattr(processor, "crop_size", None) is None:
        return None
    crop = processor.crop_size
    return int(crop.height), int(crop.width)


def _triple(values) -> tuple[float, float, float]:
    values = [float(v) for v in (values if isinstance(values, (list, tuple)) else [values])]
    return tuple(values * 3) if len(values) == 1 else tuple(values)  # type: ignore[return-value]


def synthetic_images(spec: ImagePreprocessSpec, batch: int, sequence: int, rng: np.random.Generator) -> dict:
    """Random 8-bit images through the spec's rescale and normalisation (`sequence` is unused)."""
    height, width = spec.output_size()
    pixels = rng.integers(0, 256, size=(batch, height, width, 3), dtype=np.uint8)
    return {spec.input: np.stack([normalise(image, spec) for image in pixels])}


def _example(spec: ImagePreprocessSpec) -> tuple:
    import torch

    feeds = synthetic_images(spec, 2, 0, np.random.default_rng(0))
    return (torch.from_numpy(feeds[spec.input]),)


def _build_module(folder: Path, task: Task):
    from ..tasks import auto_model_class
    from .hf import load_model
    from .wrappers import ImageLogits

    return ImageLogits(load_model(auto_model_class(task), folder)).eval()
