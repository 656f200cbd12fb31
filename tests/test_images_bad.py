"""Every bad image is one clear InputError (never a traceback), and every odd one gets the
documented conversion; size limits are checked from the header, before pixels are decoded."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest

from edgekiln.runtime.errors import InputError
from edgekiln.runtime.images.decode import load_rgb

from .image_helpers import photo

Image = pytest.importorskip("PIL.Image")


def _encoded(image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def _png_declaring(width: int, height: int) -> bytes:
    """A real 8x8 PNG whose header claims width x height (no such pixel data follows)."""
    data = bytearray(_encoded(Image.new("L", (8, 8)), "PNG"))
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: photo("chelsea.png").read_bytes()[:20000], "truncated or corrupt"),
        (lambda: photo("rocket.jpg").read_bytes()[:4000], "truncated or corrupt"),
        (lambda: b"this is not an image at all", "is not an image Pillow can read"),
        (lambda: b"", "is not an image Pillow can read"),
        (lambda: _encoded(Image.new("RGB", (1, 1)), "PNG"), "1x1 pixels: too small"),
        (lambda: _png_declaring(20000, 20000), "decompression bomb"),  # past 2x the limit: Pillow's error
        (lambda: _png_declaring(10000, 10000), "decompression bomb"),  # past the limit: Pillow's warning, made an error
        (lambda: _encoded(Image.new("RGB", (8, 400)), "PNG"), "sides differ more than 32-fold"),
        (lambda: _encoded(Image.new("F", (16, 16)), "TIFF"), "32-bit float"),
        (lambda: np.zeros((16, 16, 3), dtype=np.float32), "dtype float32"),
        (lambda: np.zeros((16, 16, 4), dtype=np.uint8), r"shape \[16, 16, 4\]"),
        (lambda: 42, "cannot read an image from the int"),
    ],
)
def test_bad_images_are_one_clear_error(make, message):
    with pytest.raises(InputError, match=message) as caught:
        load_rgb(make())
    assert "\n" not in str(caught.value)


def test_a_missing_file_and_a_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_rgb(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="is not a file"):
        load_rgb(tmp_path)


def test_cmyk_is_converted_by_pillow():
    rgb = Image.open(photo("coffee.png")).convert("RGB")
    cmyk = Image.open(io.BytesIO(_encoded(rgb.convert("CMYK"), "JPEG", quality=95)))
    assert cmyk.mode == "CMYK"
    out = load_rgb(_encoded(rgb.convert("CMYK"), "JPEG", quality=95))
    assert out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(out), np.asarray(cmyk.convert("RGB")))


def test_16_bit_greyscale_is_scaled_to_8_bits():
    values = np.array([[0, 257, 32896, 65535] * 4] * 16, dtype=np.uint16)
    out = np.asarray(load_rgb(_encoded(Image.fromarray(values), "PNG")))
    assert out.shape == (16, 16, 3)
    np.testing.assert_array_equal(out[0, :4, 0], [0, 1, 128, 255])
    assert (out[..., 0] == out[..., 2]).all()


def test_32_bit_integer_pixels_past_16_bits_are_refused():
    """Pillow's mode "I" holds 32-bit integers; values past 16 bits were clipped to white without a word."""
    wide = Image.fromarray(np.full((16, 16), 70000, dtype=np.int32), mode="I")
    with pytest.raises(InputError, match=r"integer pixels 70000\.\.70000, outside 16 bits"):
        load_rgb(wide)


def test_animated_gif_gives_its_first_frame():
    frames = [Image.new("RGB", (16, 16), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    data = _encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    out = np.asarray(load_rgb(data))
    assert (out == (255, 0, 0)).all()


@pytest.mark.parametrize("mode", ["RGBA", "LA", "P"])
def test_transparency_is_composited_on_white(mode):
    image = Image.new("RGBA", (16, 16), (0, 0, 0, 0))
    image.paste((0, 128, 0, 255), (0, 0, 8, 16))
    if mode == "LA":
        image = image.convert("LA")
    elif mode == "P":
        image = image.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
        image.info["transparency"] = image.getpixel((15, 0))
    out = np.asarray(load_rgb(_encoded(image, "PNG")))
    assert (out[:, 8:] == 255).all()  # the transparent half is white
    assert (out[:, :8] != 255).any()


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (10, 20, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to view
    out = load_rgb(_encoded(image, "JPEG", exif=exif))
    assert out.size == (20, 40)


def test_greyscale_and_palette_become_rgb():
    grey = np.asarray(load_rgb(photo("camera.png")))
    assert grey.shape[2] == 3 and (grey[..., 0] == grey[..., 1]).all()


def test_pillows_warnings_name_the_image(tmp_path):
    """A corrupt EXIF block is a warning, not an error; in a run over many files it says which one."""
    base = _encoded(Image.new("RGB", (40, 40), (90, 20, 30)), "JPEG")
    payload = b"Exif\x00\x00MM\x00\x2a\x00\x00\xff\xff"  # an IFD offset past the block
    path = tmp_path / "odd-exif.jpg"
    path.write_bytes(base[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + base[2:])
    with pytest.warns(UserWarning, match=f"^{path}: Corrupt EXIF data"):
        assert load_rgb(path).size == (40, 40)


def test_capturing_pillows_warnings_from_many_threads_leaves_the_settings_as_they_were(tmp_path):
    """catch_warnings swaps process-wide state: overlapping threads (serve) restored each other's."""
    import threading
    import warnings

    from edgekiln.runtime.images.decode import check_header

    base = _encoded(Image.new("RGB", (40, 40), (90, 20, 30)), "JPEG")
    payload = b"Exif\x00\x00MM\x00\x2a\x00\x00\xff\xff"
    data = base[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + base[2:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        filters, show = list(warnings.filters), warnings.showwarning

        def work():
            for _ in range(40):
                check_header(data)
                load_rgb(data)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert warnings.filters == filters and warnings.showwarning is show
