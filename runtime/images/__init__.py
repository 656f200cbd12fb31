"""Images on the device: the manifest's preprocessing spec, decoding with Pillow, and the tensors a
model takes. Pillow is imported only when an image is decoded (the `edgekiln[vision]` extra)."""

from .spec import IMAGE_SPEC_VERSION, ChannelOrder, ImagePreprocessSpec, Interpolation, Layout, ResizeMode

__all__ = ["IMAGE_SPEC_VERSION", "ChannelOrder", "ImagePreprocessSpec", "Interpolation", "Layout", "ResizeMode"]
