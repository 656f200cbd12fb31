"""Every Hugging Face image-classification family edgekiln reads, on every backend, against PyTorch.

Narrow random-weight configs at a real checkpoint's depth where the export depends on it (the
transformer families at ViT-Base's 12 layers: one onnxslim call once left a deep ViT's last layers
unfolded and TVM refused it), each saved with the processor its checkpoints ship. The weights are
re-drawn with unit gain (and random batch-norm statistics), so that the logits are of order one and
a wrong kernel shows; transformers' own small initialisation leaves MobileNet's logits near 1e-25.
The artifact's own preprocessing of two real photos feeds it; the logits must match the model's on
its processor's tensors."""

from __future__ import annotations

import functools

import numpy as np
import pytest

from edgekiln.compiler import compile
from edgekiln.compiler.recipe import Recipe
from edgekiln.runtime import load

from .image_helpers import LABELS, photo

tf = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")
pytest.importorskip("PIL")

SIZE = 64
BACKENDS = ("onnxruntime", "openvino", "tvm")
TOLERANCE = 2e-5  # of the largest logit's magnitude
PHOTOS = ("chelsea.png", "coffee.png")
_EXACT = {"size": {"height": SIZE, "width": SIZE}}
_SHORTEST = {"size": {"shortest_edge": SIZE}, "crop_size": {"height": SIZE, "width": SIZE}}
_TRANSFORMER = dict(
    image_size=SIZE, patch_size=16, hidden_size=32, num_hidden_layers=12, num_attention_heads=2, intermediate_size=64
)
_STAGES = dict(hidden_sizes=[8, 16, 32, 64])

# family -> (config class, config keywords, model class or None for the Auto class, processor class, its keywords)
FAMILIES = {
    "vit": ("ViTConfig", _TRANSFORMER, None, "ViTImageProcessor", _EXACT),
    "deit": ("DeiTConfig", _TRANSFORMER, "DeiTForImageClassification", "DeiTImageProcessor", _SHORTEST),
    "beit": ("BeitConfig", dict(_TRANSFORMER, use_mean_pooling=True), None, "BeitImageProcessor", _EXACT),
    "dinov2": ("Dinov2Config", _TRANSFORMER, None, "BitImageProcessor", _SHORTEST),
    "swin": (
        "SwinConfig",
        dict(image_size=SIZE, patch_size=4, embed_dim=16, depths=[2, 2, 6, 2], num_heads=[1, 2, 4, 8], window_size=2),
        None,
        "ViTImageProcessor",
        _EXACT,
    ),
    "convnext": ("ConvNextConfig", dict(_STAGES, depths=[3, 3, 9, 3]), None, "ConvNextImageProcessor", _SHORTEST),
    "resnet": (
        "ResNetConfig",
        dict(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[3, 4, 6, 3], layer_type="bottleneck"),
        None,
        "ConvNextImageProcessor",
        _SHORTEST,
    ),
    "regnet": (
        "RegNetConfig",
        dict(_STAGES, embedding_size=8, depths=[1, 2, 4, 1], groups_width=8),
        None,
        "ConvNextImageProcessor",
        _SHORTEST,
    ),
    "mobilenet_v1": (
        "MobileNetV1Config",
        dict(image_size=SIZE, depth_multiplier=0.25),
        None,
        "MobileNetV1ImageProcessor",
        _SHORTEST,
    ),
    "mobilenet_v2": (
        "MobileNetV2Config",
        dict(image_size=SIZE, depth_multiplier=0.35),
        None,
        "MobileNetV2ImageProcessor",
        _SHORTEST,
    ),
    # its pooler is an AveragePool with a kernel of hidden_dim, which OpenVINO refused before
    "efficientnet": (
        "EfficientNetConfig",
        dict(image_size=SIZE, width_coefficient=0.25, depth_coefficient=0.5, hidden_dim=320),
        None,
        "EfficientNetImageProcessor",
        _EXACT,
    ),
    "mobilevit": (
        "MobileViTConfig",
        dict(image_size=SIZE, hidden_sizes=[16, 24, 32], neck_hidden_sizes=[8, 8, 16, 16, 24, 24, 32]),
        None,
        "MobileViTImageProcessor",
        _SHORTEST,
    ),
    "bit": (
        "BitConfig",
        dict(embedding_size=16, hidden_sizes=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_groups=4),
        None,
        "BitImageProcessor",
        _SHORTEST,
    ),
}


def _unit_gain(model) -> None:
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                module.weight.normal_(0, module.weight[0].numel() ** -0.5)
                if module.bias is not None:
                    module.bias.normal_(0, 0.1)
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)


@functools.cache
def _folder(root, family: str):
    """The family's folder and the model's logits on its processor's tensors of the photos."""
    from edgekiln.runtime.images.decode import load_rgb

    config_class, keywords, model_class, processor_class, processor_keywords = FAMILIES[family]
    labels = dict(enumerate(LABELS))
    config = getattr(tf, config_class)(
        num_labels=len(LABELS), id2label=labels, label2id={v: k for k, v in labels.items()}, **keywords
    )
    torch.manual_seed(0)
    build = getattr(tf, model_class) if model_class else tf.AutoModelForImageClassification.from_config
    model = build(config)
    _unit_gain(model.eval())
    folder = root / family
    model.save_pretrained(folder)
    processor = getattr(tf, processor_class)(**processor_keywords)
    processor.save_pretrained(folder)
    pixels = processor(images=[load_rgb(photo(name)) for name in PHOTOS], return_tensors="pt")["pixel_values"]
    with torch.inference_mode():
        return folder, model(pixel_values=pixels).logits.numpy()


@pytest.fixture(scope="module")
def family_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("image-families")
    return lambda family: _folder(root, family)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "family", [pytest.param(f, marks=pytest.mark.xdist_group(f"image-family-{f}")) for f in FAMILIES]
)
def test_family_compiles_and_matches_pytorch(family, backend, family_folder, tmp_path):
    if backend != "onnxruntime":
        pytest.importorskip(backend)
    folder, expected = family_folder(family)
    session = load(compile(folder, "host", tmp_path / "art", Recipe.from_flags(backend=backend)).path)
    feeds, _ = session.encoder.encode([photo(name) for name in PHOTOS])
    got = session.run(feeds)["logits"]
    scale = float(np.abs(expected).max())
    assert scale > 0.05, f"{family}: degenerate logits ({scale}) would make the comparison vacuous"
    assert np.abs(got - expected).max() <= TOLERANCE * scale
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))
