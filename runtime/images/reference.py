"""A check of an image artifact's preprocessing where it runs: `reference_image.npz` holds a test
image (PNG bytes) and the tensor the build machine's runtime made of it; `edgekiln verify` decodes
and preprocesses the same bytes here and compares. The model cases in reference.npz start from
tensors, so without it a device whose Pillow resizes otherwise would still pass."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .spec import ImagePreprocessSpec

IMAGE_REFERENCE_FILE = "reference_image.npz"
LEVELS = 3  # Pillow versions may round a resized pixel one or two 0-255 levels apart; a wrong convention is far more


def test_image() -> bytes:
    """A deterministic 97 x 61 RGB photo stand-in (smooth gradients and texture), as PNG bytes."""
    from PIL import Image

    y, x = np.mgrid[0:61, 0:97]
    noise = np.random.default_rng(7).integers(0, 40, size=(61, 97, 3))
    pixels = np.stack([x * 2.5, y * 4.0, (x + y) * 1.5], axis=-1) + noise
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB").save(buffer, "PNG")
    return buffer.getvalue()


def write_image_reference(folder: Path, encoder) -> str:
    """Store the test image and `encoder`'s (the runtime's ImagePreprocessor) tensor of it."""
    data = test_image()
    tensor = next(iter(encoder.encode([data])[0].values()))
    np.savez(folder / IMAGE_REFERENCE_FILE, **{"image": np.frombuffer(data, np.uint8), "tensor": tensor})
    return IMAGE_REFERENCE_FILE


def tolerance(spec: ImagePreprocessSpec) -> float:
    """LEVELS 0-255 levels, in the tensor's units (after rescale and the smallest std)."""
    return LEVELS * spec.rescale / (min(spec.std) if spec.std else 1.0)


def check_image_reference(arrays: dict[str, np.ndarray], encoder, spec: ImagePreprocessSpec) -> dict:
    """{max_abs_diff, threshold, passed} of this machine's preprocessing against the stored tensor."""
    from ..errors import ArtifactError

    if set(arrays) != {"image", "tensor"} or arrays["image"].dtype != np.uint8:
        raise ArtifactError(
            f"{IMAGE_REFERENCE_FILE} must hold a uint8 `image` (a PNG file) and a `tensor`", hint="recompile it"
        )
    got = next(iter(encoder.encode([arrays["image"].tobytes()])[0].values()))
    if got.shape != arrays["tensor"].shape:
        raise ArtifactError(
            f"the preprocessed test image is {list(got.shape)}, the stored one {list(arrays['tensor'].shape)}",
            hint="recompile the artifact",
        )
    diff = float(np.abs(got.astype(np.float64) - arrays["tensor"].astype(np.float64)).max(initial=0.0))
    limit = tolerance(spec)
    return {"max_abs_diff": diff, "threshold": limit, "passed": diff <= limit}
