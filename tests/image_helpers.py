"""Shared by the image tests: the scikit-image and AI Benchmark photos, tiny random-weight image classifiers."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

LABELS = ("cat", "coffee", "rocket", "astronaut", "other", "camera", "horse")  # more than 5: top-5 is not trivial


def photos() -> list[Path]:
    """The real photos scikit-image ships (JPEG and PNG; colour and greyscale)."""
    data = pytest.importorskip("skimage.data")
    folder = Path(data.__file__).parent
    return sorted(path for path in folder.iterdir() if path.suffix in (".png", ".jpg"))


def ai_benchmark_photos(kind: str) -> list[Path]:
    """AI Benchmark's real photos (the `ai-benchmark` package's data, Apache-2.0; its code is not imported):
    "classification" (100 photos of ImageNet-type subjects), "enhancement" (100 street scenes),
    "segmentation" (30 photos of cats, their `_segmented` overlays left out)."""
    spec = importlib.util.find_spec("ai_benchmark")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ai-benchmark (its photos) is not installed: pip install -e '.[test]'")
    folder = Path(spec.submodule_search_locations[0]) / "data" / kind
    return sorted((p for p in folder.glob("*.jpg") if p.stem.isdigit()), key=lambda p: int(p.stem))


def photo(name: str) -> Path:
    return next(path for path in photos() if path.name == name)


def make_image_folder(folder: Path, kind: str, *, size: int = 32, seed: int = 0) -> Path:
    """A tiny random-weight transformers classifier of `kind` (vit, convnext, resnet) with its processor."""
    import torch
    import transformers as tf

    labels = dict(enumerate(LABELS))
    common = {"num_labels": len(LABELS), "id2label": labels, "label2id": {v: k for k, v in labels.items()}}
    torch.manual_seed(seed)
    if kind == "vit":
        config = tf.ViTConfig(
            image_size=size,
            patch_size=8,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            **common,
        )
        model, processor = (
            tf.ViTForImageClassification(config),
            tf.ViTImageProcessor(size={"height": size, "width": size}),
        )
    elif kind == "convnext":
        config = tf.ConvNextConfig(num_stages=2, hidden_sizes=[8, 16], depths=[1, 1], **common)
        model, processor = (
            tf.ConvNextForImageClassification(config),
            tf.ConvNextImageProcessor(
                size={"shortest_edge": size},
                crop_pct=0.875,
                image_mean=[0.485, 0.456, 0.406],
                image_std=[0.229, 0.224, 0.225],
            ),
        )
    else:
        config = tf.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic", **common)
        model, processor = (
            tf.ResNetForImageClassification(config),
            tf.ConvNextImageProcessor(size={"shortest_edge": size}, resample=2),
        )
    model.eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def timm_or_skip():
    """The timm package, or the calling test module skipped: timm is not installed, or its torchvision was
    built for another torch (CI's second leg has torch==2.14.1 torchvision==0.29.1 timm)."""
    try:
        import timm
        import timm.data
        import timm.models
    except Exception as exc:  # ModuleNotFoundError, or RuntimeError from a mismatched torchvision
        pytest.skip(
            f"timm does not import here ({type(exc).__name__}: {str(exc).splitlines()[0][:80]}); "
            "CI runs these in a venv with torch==2.14.1 torchvision==0.29.1 timm",
            allow_module_level=True,
        )
    return timm
