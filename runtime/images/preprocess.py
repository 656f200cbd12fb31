"""An RGB image to the model's input tensor, exactly as an `ImagePreprocessSpec` says.

Resizing is Pillow's (`Image.resize` with the model's filter and no reducing gap), on 8-bit pixels,
as the Hugging Face image processors do it; the crop offsets, rescale (in float64, then float32)
and normalisation follow them too, so the tensors match the model's own processor.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ArtifactError, InputError
from ..manifest import TensorSpec
from .decode import load_rgb, pillow
from .spec import ChannelOrder, ImagePreprocessSpec, Layout, ResizeMode

_FILTERS = {"nearest": "NEAREST", "bilinear": "BILINEAR", "bicubic": "BICUBIC", "lanczos": "LANCZOS"}


class ImagePreprocessor:
    """`encode(images)` -> (feeds, None): the session's preprocessor for image tasks."""

    def __init__(self, spec: ImagePreprocessSpec, inputs: Sequence[TensorSpec]) -> None:
        by_name = {tensor.name: tensor for tensor in inputs}
        tensor = by_name.get(spec.input)
        if tensor is None or len(tensor.shape) != 4:
            raise ArtifactError(
                f"the manifest's image preprocessing feeds {spec.input!r}, which is not a 4-D model "
                f"input (inputs: {sorted(by_name)})",
                hint="recompile the artifact",
            )
        height, width = spec.output_size()
        expected = (3, height, width) if spec.layout is Layout.NCHW else (height, width, 3)
        fixed = [(got, want) for got, want in zip(tensor.shape[1:], expected) if isinstance(got, int) and got != want]
        if fixed:
            raise ArtifactError(
                f"the manifest's image preprocessing gives {spec.layout.value} {list(expected)}, but "
                f"input {spec.input} is {list(tensor.shape)}",
                hint="recompile the artifact",
            )
        self.spec = spec
        self.names = (spec.input,)

    def encode(self, images: Any) -> tuple[dict[str, np.ndarray], None]:
        items = check_images(images)
        batch = np.stack([self.tensor(load_rgb(item)) for item in items])
        return {self.spec.input: batch}, None

    def tensor(self, image: Any) -> np.ndarray:
        """One RGB Pillow image -> float32 [3, H, W] (NCHW) or [H, W, 3] (NHWC)."""
        pixels = np.asarray(resize(image, self.spec))
        if self.spec.crop is not None:
            pixels = center_crop(pixels, *self.spec.crop, offset=self.spec.crop_offset)
        return normalise(pixels, self.spec)


def check_images(images: Any) -> list:
    """A batch from one image or a sequence of them (a lone path, bytes or array is one image)."""
    if isinstance(images, (str, bytes, bytearray, memoryview)) or hasattr(images, "__fspath__"):
        return [images]
    if hasattr(images, "getbands") or (isinstance(images, np.ndarray) and images.ndim in (2, 3)):
        return [images]
    try:
        items = list(images)
    except TypeError:
        raise InputError(
            f"cannot read images from a {type(images).__name__}",
            hint="pass paths, bytes, PIL images or uint8 arrays, alone or in a list",
        ) from None
    if not items:
        raise InputError("no images given", hint="pass at least one image")
    return items


def resize(image: Any, spec: ImagePreprocessSpec) -> Any:
    Image, _ = pillow()
    width, height = image.size
    if spec.resize is ResizeMode.NONE:
        return image
    if spec.resize is ResizeMode.EXACT:
        new_height, new_width = spec.size
    else:  # the shorter side to the size, the longer scaled and truncated (transformers, torchvision)
        edge = spec.size[0]
        short, long = (width, height) if width <= height else (height, width)
        new_short, new_long = edge, int(edge * long / short)
        new_width, new_height = (new_short, new_long) if width <= height else (new_long, new_short)
    if (new_width, new_height) == (width, height):
        return image
    resample = getattr(Image.Resampling, _FILTERS[spec.interpolation.value])
    return image.resize((new_width, new_height), resample=resample, reducing_gap=None)


def center_crop(pixels: np.ndarray, height: int, width: int, offset: str = "floor") -> np.ndarray:
    """The centre (height, width) window, padded with zeros where the image is smaller. `offset` "floor"
    is transformers' (an odd padding puts the extra row on top); "round": an odd margin's offset rounded
    half to even and an odd padding's extra row at the bottom, as torchvision's CenterCrop does."""
    rows, cols = pixels.shape[:2]
    if rows < height or cols < width:
        padded = np.zeros((max(rows, height), max(cols, width), pixels.shape[2]), dtype=pixels.dtype)
        extra = 0 if offset == "round" else 1  # ceil (transformers) or floor (torchvision) of half the padding
        top, left = (padded.shape[0] - rows + extra) // 2, (padded.shape[1] - cols + extra) // 2
        padded[top : top + rows, left : left + cols] = pixels
        pixels, rows, cols = padded, padded.shape[0], padded.shape[1]
    top, left = (rows - height) // 2, (cols - width) // 2
    if offset == "round":
        top, left = round((rows - height) / 2), round((cols - width) / 2)
    return pixels[top : top + height, left : left + width]


def normalise(pixels: np.ndarray, spec: ImagePreprocessSpec) -> np.ndarray:
    """uint8 [H, W, 3] RGB -> float32, rescaled, normalised, in the spec's channel order and layout."""
    values = (pixels.astype(np.float64) * spec.rescale).astype(np.float32)
    if spec.mean is not None:
        values = (values - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    if spec.channel_order is ChannelOrder.BGR:
        values = values[..., ::-1]
    if spec.layout is Layout.NCHW:
        values = values.transpose(2, 0, 1)
    return np.asarray(values, dtype=np.float32, order="C")
