"""Timing the image front end apart from the model: decode + preprocess of one photo-sized JPEG."""

from __future__ import annotations

import io

import numpy as np

from .decode import pillow

PHOTO = (640, 480)  # width, height of the synthetic photo (a typical camera frame)


def synthetic_jpeg(rng: np.random.Generator) -> bytes:
    """A smooth random colour field (compresses like a photo, unlike noise), encoded as a JPEG."""
    Image, _ = pillow()
    width, height = PHOTO
    coarse = rng.integers(0, 256, size=(height // 32 + 1, width // 32 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def measure_front_end(encoder, config, rng: np.random.Generator, measure) -> dict:
    """`measure`'s statistics for decoding and preprocessing one JPEG (batch 1), as the runtime does it."""
    data = synthetic_jpeg(rng)
    stats = measure(lambda feeds: encoder.encode([data]), {}, config, 1)
    return {"image": f"{PHOTO[0]}x{PHOTO[1]} JPEG", **stats}
