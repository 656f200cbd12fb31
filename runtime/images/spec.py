"""How an image becomes the model's input tensor, written into the manifest by the compiler.

The steps run in this order: decode, EXIF orientation, colour mode to RGB, resize, centre crop,
rescale, mean/std normalisation, channel order, layout. Every number here is the model's own
(read from its processor config); the runtime needs nothing else to reproduce its inputs.
"""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_serializer, model_validator

IMAGE_SPEC_VERSION = 1


class ResizeMode(str, Enum):
    SHORTEST_EDGE = "shortest-edge"  # the shorter side becomes `size[0]`, the aspect ratio is kept
    EXACT = "exact"  # to `size` = (height, width), the aspect ratio is not kept
    NONE = "none"


class Interpolation(str, Enum):
    """Pillow's resampling filters (what Hugging Face image processors use)."""

    NEAREST = "nearest"
    BILINEAR = "bilinear"
    BICUBIC = "bicubic"
    LANCZOS = "lanczos"


class ChannelOrder(str, Enum):
    RGB = "RGB"
    BGR = "BGR"


class Layout(str, Enum):
    NCHW = "NCHW"
    NHWC = "NHWC"


class ImagePreprocessSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    version: Literal[1] = IMAGE_SPEC_VERSION
    input: str = Field(description="the model input the tensor feeds")
    resize: ResizeMode = ResizeMode.EXACT
    size: tuple[int, ...] = Field(default=(224, 224), description="shortest-edge: (edge,); exact: (height, width)")
    interpolation: Interpolation = Interpolation.BILINEAR
    crop: tuple[int, int] | None = Field(default=None, description="centre crop (height, width) after the resize")
    crop_offset: Literal["floor", "round"] = Field(
        default="floor",
        description="an odd margin's crop offset: floor(margin / 2) (transformers) or round half to even "
        "(torchvision's CenterCrop, which timm uses)",
    )
    rescale: float = Field(default=1 / 255, gt=0, description="multiplies the 0-255 pixel values (1: none)")
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    channel_order: ChannelOrder = ChannelOrder.RGB
    layout: Layout = Layout.NCHW
    dtype: Literal["float32"] = "float32"

    @model_validator(mode="after")
    def _consistent(self) -> ImagePreprocessSpec:
        expected = {ResizeMode.SHORTEST_EDGE: 1, ResizeMode.EXACT: 2, ResizeMode.NONE: None}[self.resize]
        if expected is not None and len(self.size) != expected:
            raise ValueError(f"resize {self.resize.value} takes {expected} size value(s), found {list(self.size)}")
        if any(side < 1 or side > 8192 for side in (*self.size, *(self.crop or ()))):
            raise ValueError(f"image sides must be 1..8192, found size {list(self.size)}, crop {self.crop}")
        if (self.mean is None) != (self.std is None) or (self.std is not None and min(self.std) <= 0):
            raise ValueError("mean and std come together, and every std must be positive")
        if self.resize is not ResizeMode.EXACT and self.crop is None:
            raise ValueError("the model takes one fixed size: a shortest-edge resize (or none) needs a centre crop")
        return self

    @model_serializer(mode="wrap")
    def _without_default_offset(self, handler):
        """`crop_offset` is written only where it is not the default: a spec that floors (every Hugging Face
        and torch-module artifact) stays readable by runtimes older than the field, and hashes as before."""
        data = handler(self)
        if isinstance(data, dict) and data.get("crop_offset") == "floor":
            del data["crop_offset"]
        return data

    def output_size(self) -> tuple[int, int]:
        """(height, width) of the tensor: the crop's, else the exact resize's."""
        return self.crop if self.crop is not None else (self.size[0], self.size[1])
