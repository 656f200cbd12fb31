"""Image preprocessing run by the runtime, against the model's own transformers image processor on
real photos: identical tensors (transformers' Pillow backend, the one it uses without torchvision)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from edgekiln.compiler.evaluate.predictors import image_encoder
from edgekiln.compiler.sources.hf_image import image_spec
from edgekiln.runtime.images.decode import load_rgb
from edgekiln.runtime.images.spec import ChannelOrder, ImagePreprocessSpec, Layout

from .image_helpers import make_image_folder, photo, photos

pytest.importorskip("PIL")
tf = pytest.importorskip("transformers")
PARITY = 1e-5

PROCESSORS = {
    "vit-bilinear": lambda: tf.ViTImageProcessor(),
    "vit-bicubic-exact-non-square": lambda: tf.ViTImageProcessor(resample=3, size={"height": 160, "width": 200}),
    "vit-nearest": lambda: tf.ViTImageProcessor(resample=0, size={"height": 96, "width": 96}),
    "convnext-crop-pct": lambda: tf.ConvNextImageProcessor(size={"shortest_edge": 224}),
    "convnext-384-warp": lambda: tf.ConvNextImageProcessor(size={"shortest_edge": 384}),
    "mobilenet-v2": lambda: tf.MobileNetV2ImageProcessor(),
    "deit": lambda: tf.DeiTImageProcessor(),
    "deit-crop-without-resize": lambda: tf.DeiTImageProcessor(do_resize=False),
    "bit": lambda: tf.BitImageProcessor(),
    "efficientnet": lambda: tf.EfficientNetImageProcessor(),  # divides by std twice (include_top)
    "efficientnet-offset-no-top": lambda: tf.EfficientNetImageProcessor(rescale_offset=True, include_top=False),
    "efficientnet-top-only": lambda: tf.EfficientNetImageProcessor(do_normalize=False),
    "efficientnet-offset-only": lambda: tf.EfficientNetImageProcessor(
        rescale_offset=True, do_normalize=False, include_top=False, size={"height": 224, "width": 224}
    ),
}


@pytest.fixture(scope="module")
def rgb_photos():
    return [(path.name, load_rgb(path)) for path in photos()]


@pytest.mark.parametrize("name", sorted(PROCESSORS))
def test_tensors_match_the_models_processor(name, tmp_path, rgb_photos):
    processor = PROCESSORS[name]()
    processor.save_pretrained(tmp_path)
    encoder = image_encoder(image_spec(tmp_path))
    assert len(rgb_photos) >= 15
    for photo_name, image in rgb_photos:
        expected = processor(images=image, return_tensors="np")["pixel_values"][0]
        got = encoder.tensor(image)
        assert got.shape == expected.shape, photo_name
        assert np.abs(got - expected).max() <= PARITY, (name, photo_name)


def test_layout_and_channel_order_follow_the_spec(tmp_path):
    tf.ViTImageProcessor(size={"height": 48, "width": 40}).save_pretrained(tmp_path)
    spec = image_spec(tmp_path)
    image = load_rgb(photo("coffee.png"))
    nchw = image_encoder(spec).tensor(image)
    nhwc_bgr = image_encoder(spec.model_copy(update={"layout": Layout.NHWC, "channel_order": ChannelOrder.BGR}))
    assert nchw.shape == (3, 48, 40)
    np.testing.assert_array_equal(nhwc_bgr.tensor(image), nchw.transpose(1, 2, 0)[..., ::-1])


def test_every_input_kind_gives_the_same_tensor(tmp_path):
    from PIL import Image

    tf.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    encoder = image_encoder(image_spec(tmp_path))
    path = photo("astronaut.png")
    pil = Image.open(path)
    kinds = [path, str(path), path.read_bytes(), pil, np.asarray(pil.convert("RGB"))]
    batch = encoder.encode(kinds)[0]["pixel_values"]
    assert batch.shape == (len(kinds), 3, 32, 32)
    for row in batch[1:]:
        np.testing.assert_array_equal(row, batch[0])
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG")
    np.testing.assert_array_equal(encoder.encode(buffer.getvalue())[0]["pixel_values"][0], batch[0])


def test_same_top1_as_the_model_on_its_processors_tensors(tmp_path, rgb_photos):
    import torch

    folder = make_image_folder(tmp_path / "convnext", "convnext", size=64)
    processor = tf.AutoImageProcessor.from_pretrained(str(folder))
    model = tf.AutoModelForImageClassification.from_pretrained(str(folder)).eval()
    encoder = image_encoder(image_spec(folder))
    images = [image for _, image in rgb_photos]
    with torch.inference_mode():
        theirs = model(pixel_values=torch.from_numpy(processor(images=images, return_tensors="np")["pixel_values"]))
        ours = model(pixel_values=torch.from_numpy(encoder.encode(images)[0]["pixel_values"]))
    np.testing.assert_array_equal(ours.logits.argmax(-1).numpy(), theirs.logits.argmax(-1).numpy())
    assert np.abs(ours.logits.numpy() - theirs.logits.numpy()).max() <= 1e-5


def test_an_unsupported_processor_is_refused(tmp_path):
    from edgekiln.compiler.errors import CompileError

    tf.LevitImageProcessor().save_pretrained(tmp_path)
    with pytest.raises(CompileError, match="LevitImageProcessor is not one edgekiln reproduces"):
        image_spec(tmp_path)


def test_a_convnext_processor_sized_by_height_and_width_is_refused(tmp_path):
    """Its crop_pct needs a shortest edge (transformers' processor refuses it too): it was dropped silently."""
    from edgekiln.compiler.errors import CompileError

    processor = tf.ConvNextImageProcessor(size={"shortest_edge": 32}, crop_pct=0.875)
    processor.save_pretrained(tmp_path)
    config = tmp_path / "preprocessor_config.json"
    config.write_text(config.read_text().replace('"shortest_edge": 32', '"height": 32, "width": 32'))
    with pytest.raises(CompileError, match="ConvNeXt resizes by shortest_edge"):
        image_spec(tmp_path)


def test_a_processor_that_neither_resizes_nor_crops_is_refused(tmp_path):
    """ConvNeXt's crop_pct crop belongs to its resize: without do_resize the whole image goes in, at its
    own size, which a fixed-size artifact cannot take (it was centre-cropped to 224 without a word)."""
    from edgekiln.compiler.errors import CompileError

    tf.ConvNextImageProcessor(size={"shortest_edge": 224}, do_resize=False).save_pretrained(tmp_path)
    with pytest.raises(CompileError, match="does not give one fixed input size") as caught:
        image_spec(tmp_path)
    assert "\n" not in str(caught.value) and "validation error" not in str(caught.value)


def test_crop_offset_is_written_only_where_it_is_not_the_default():
    """A spec that floors (Hugging Face and torch-module artifacts) dumps as before the field existed, so
    runtimes older than it (extra="forbid") still load those artifacts; a rounding spec (timm) says so."""
    floor = ImagePreprocessSpec(input="pixel_values", resize="shortest-edge", size=(256,), crop=(224, 224))
    assert "crop_offset" not in floor.model_dump(mode="json")
    assert ImagePreprocessSpec.model_validate(floor.model_dump(mode="json")) == floor
    rounded = floor.model_copy(update={"crop_offset": "round"})
    assert rounded.model_dump(mode="json")["crop_offset"] == "round"
    assert ImagePreprocessSpec.model_validate_json(rounded.model_dump_json()) == rounded
