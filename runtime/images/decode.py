"""Decoding one image into an RGB Pillow image, with bounded memory and one clear error per bad input.

Accepted: a path (str or os.PathLike), bytes, a Pillow image, or a uint8 array H×W×3 (RGB) or H×W.
Conversions (documented in the README's "Images" section):
- EXIF orientation is applied (a phone photo comes out the way it is viewed).
- Transparency (RGBA, LA, PA, a palette with a transparent colour) is composited on white, as the
  Hugging Face image processors' `convert_to_rgb` does; palette and greyscale images become RGB.
- CMYK uses Pillow's plain conversion (ICC profiles are not applied).
- 16-bit greyscale (I;16, and I as a 16-bit PNG opens) is scaled to 8 bits (v * 255 / 65535, rounded).
- An animated GIF/PNG/WebP gives its first frame.
Refused with an InputError: not an image, a truncated or corrupt file, fewer than MIN_SIDE pixels on
a side, more pixels than Pillow's MAX_IMAGE_PIXELS (a decompression bomb: checked from the header,
before any pixel is decoded), a side ratio above MAX_ASPECT, 32-bit float images.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError

MIN_SIDE = 8
MAX_ASPECT = 32
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default for MAX_IMAGE_PIXELS
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def pillow():
    try:
        from PIL import Image, ImageOps
    except ImportError:
        raise InputError(
            "decoding images needs Pillow, which is not installed", hint="pip install 'edgekiln[vision]'"
        ) from None
    return Image, ImageOps


def describe(item: Any) -> str:
    """How an input is named in errors."""
    if isinstance(item, (str, os.PathLike)):
        return str(item)
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"the {len(item)}-byte image"
    return f"the {type(item).__name__}"


def load_rgb(item: Any) -> Any:
    """`item` as an RGB Pillow image (see the module docstring for what is converted and refused)."""
    Image, ImageOps = pillow()
    name = describe(item)
    if isinstance(item, Image.Image):
        image = item
    elif isinstance(item, np.ndarray):
        image = _from_array(item, name)
    elif isinstance(item, (str, os.PathLike, bytes, bytearray, memoryview)):
        image = _open(item, name)
    else:
        raise InputError(
            f"cannot read an image from {name}", hint="pass file paths, bytes, PIL images or uint8 arrays (H x W x 3)"
        )
    _check_size(image.size, name)
    try:
        if getattr(image, "is_animated", False):
            image.seek(0)  # the first frame
        image.load()
        with _CAPTURE, warnings.catch_warnings(record=True) as caught:  # Pillow's (corrupt EXIF) name no file
            warnings.simplefilter("always")
            image = ImageOps.exif_transpose(image)
        _named(caught, name)
        return _to_rgb(image, name)
    except InputError:
        raise
    except AssertionError:  # Pillow's check that a lazily read image still has its file
        raise InputError(
            f"{name} cannot be read: it was closed before its pixels were loaded",
            hint="pass it while its file is open, or call image.load() before closing it",
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise InputError(
            f"{name} is truncated or corrupt ({_first_line(exc)})", hint="re-encode or re-download the image"
        ) from None


def check_header(item: Any) -> None:
    """What `load_rgb` refuses from the file header alone (not an image, too small or large, a bomb),
    without decoding pixels: a quick pass over a dataset before a long job."""
    image = _open(item, describe(item))
    with image:
        _check_size(image.size, describe(item))


# catch_warnings swaps the process's warning settings: threads that overlap (serve's codec threads and
# model workers) would restore each other's, and warnings would vanish. Held only around header reads
# and EXIF parsing (cheap), never around decoding pixels.
_CAPTURE = threading.Lock()


def _named(caught: list, name: str) -> None:
    """Pillow's warnings (corrupt EXIF, oversized tags) again, naming the image they are about."""
    for warning in caught:
        warnings.warn(f"{name}: {warning.message}", UserWarning, stacklevel=3)


def _open(item: Any, name: str) -> Any:
    Image, _ = pillow()
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        if not path.is_file():
            raise InputError(f"image {name} does not exist" if not path.exists() else f"image {name} is not a file")
        source: Any = path
    else:
        source = io.BytesIO(bytes(item))
    try:
        with _CAPTURE, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            warnings.simplefilter("error", Image.DecompressionBombWarning)  # a bomb is an error, not a warning
            image = Image.open(source)
        _named(caught, name)
        return image
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"{name} declares more than {_max_pixels():,} pixels (a decompression bomb?)",
            hint="resize the image below that before running the model",
        ) from None
    except Image.UnidentifiedImageError:
        raise InputError(
            f"{name} is not an image Pillow can read", hint="pass a JPEG, PNG, GIF, BMP, TIFF or WebP file"
        ) from None
    except (PermissionError, IsADirectoryError) as exc:
        raise InputError(f"cannot read image {name} ({exc.strerror})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # a header cut short or malformed
        raise InputError(
            f"{name} is truncated or corrupt ({_first_line(exc)})", hint="re-encode or re-download the image"
        ) from None


def _from_array(array: np.ndarray, name: str) -> Any:
    Image, _ = pillow()
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise InputError(
            f"{name} has dtype {array.dtype} and shape {list(array.shape)}",
            hint="pass a uint8 array of shape (height, width, 3) in RGB order, or (height, width)",
        )
    return Image.fromarray(np.ascontiguousarray(array))


def _check_size(size: tuple[int, int], name: str) -> None:
    width, height = size
    if min(width, height) < MIN_SIDE:
        raise InputError(
            f"{name} is {width}x{height} pixels: too small to classify",
            hint=f"images need at least {MIN_SIDE} pixels on each side",
        )
    if width * height > _max_pixels():
        raise InputError(
            f"{name} is {width}x{height} pixels, more than {_max_pixels():,} (a decompression bomb?)",
            hint="resize the image below that before running the model",
        )
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise InputError(
            f"{name} is {width}x{height} pixels: its sides differ more than {MAX_ASPECT}-fold",
            hint="crop it to the region to classify",
        )


def _to_rgb(image: Any, name: str) -> Any:
    Image, _ = pillow()
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in _SIXTEEN_BIT:
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):  # mode "I" is 32-bit: not a 16-bit image
            raise InputError(
                f"{name} holds integer pixels {values.min()}..{values.max()}, outside 16 bits (0..65535)",
                hint="scale it to 8 or 16 bits",
            )
        grey = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if mode == "F":
        raise InputError(f"{name} holds 32-bit float pixels", hint="save it as an 8- or 16-bit image")
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except ValueError:
        raise InputError(
            f"{name} has colour mode {mode}, which Pillow cannot convert to RGB",
            hint="save it as an RGB or greyscale image",
        ) from None


def _max_pixels() -> int:
    Image, _ = pillow()
    return int(Image.MAX_IMAGE_PIXELS or DEFAULT_MAX_PIXELS)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
