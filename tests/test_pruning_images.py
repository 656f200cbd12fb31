"""Pruning image classifiers from image data: conv channels removed to a FLOPs target (Torch-Pruning),
Taylor importance from labelled or model-labelled images, recovery by distillation, and the pruned
model compiled with the source's preprocessing and labels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("torch_pruning")
pytest.importorskip("PIL")

from edgekiln.compiler import Recipe, compile  # noqa: E402
from edgekiln.compiler.errors import CompileError  # noqa: E402
from edgekiln.compiler.pruning import image_entry  # noqa: E402
from edgekiln.compiler.pruning.config import PruneConfig, RecoveryConfig  # noqa: E402
from edgekiln.runtime import load  # noqa: E402
from edgekiln.runtime.images.spec import ImagePreprocessSpec  # noqa: E402

SPEC = ImagePreprocessSpec(input="pixels", size=(32, 32), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
LABELS = tuple(str(i) for i in range(10))


def write_digits(folder: Path, indices, images, targets) -> Path:
    from PIL import Image

    for i in indices:
        pixels = (images[i] * 255 / 16).astype(np.uint8)
        rgb = np.stack([pixels] * 3, axis=-1)
        (folder / str(targets[i])).mkdir(parents=True, exist_ok=True)
        Image.fromarray(rgb).resize((32, 32), Image.Resampling.NEAREST).save(folder / str(targets[i]) / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> tuple[Path, Path]:
    """(train, test) image folders of scikit-learn's handwritten digits, upscaled to 32x32 RGB PNGs."""
    datasets = pytest.importorskip("sklearn.datasets")
    bunch = datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(bunch.target))
    root = tmp_path_factory.mktemp("digits")
    train = write_digits(root / "train", order[:500], bunch.images, bunch.target)
    test = write_digits(root / "test", order[500:800], bunch.images, bunch.target)
    return train, test


class SmallCnn(torch.nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()

        def block(c_in: int, c_out: int):
            return [torch.nn.Conv2d(c_in, c_out, 3, padding=1), torch.nn.BatchNorm2d(c_out), torch.nn.ReLU()]

        self.features = torch.nn.Sequential(
            *block(3, 16), torch.nn.MaxPool2d(2), *block(16, 32), torch.nn.MaxPool2d(2), *block(32, 32)
        )
        self.head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, classes))

    def forward(self, pixels):
        return self.head(self.features(pixels))


def tensors(folder: Path):
    from edgekiln.compiler.data import load_dataset
    from edgekiln.compiler.evaluate.predictors import image_encoder

    dataset = load_dataset(str(folder))
    feeds, _ = image_encoder(SPEC).encode([e.path for e in dataset.examples])
    ids = np.asarray([int(e.label) for e in dataset.examples])
    return torch.from_numpy(feeds[SPEC.input]), torch.from_numpy(ids)


@pytest.fixture(scope="module")
def trained(digits) -> SmallCnn:
    """The small CNN trained on the digits for a few epochs (a few seconds on one core)."""
    torch.manual_seed(0)
    model = SmallCnn()
    pixels, ids = tensors(digits[0])
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    for epoch in range(5):
        order = torch.randperm(len(ids), generator=torch.Generator().manual_seed(epoch))
        model.train()
        for start in range(0, len(ids), 32):
            batch = order[start : start + 32]
            loss = torch.nn.functional.cross_entropy(model(pixels[batch]), ids[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():  # batch-norm statistics of the final weights
        for layer in model.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.reset_running_stats()
                layer.momentum = None
        model(pixels)
    for layer in model.modules():
        if isinstance(layer, torch.nn.BatchNorm2d):
            layer.momentum = 0.1
    return model.eval()


def recipe(**prune) -> Recipe:
    return Recipe(
        source={"image": SPEC, "labels": LABELS},
        prune=PruneConfig(**{"multiple_of": 1, **prune}),
        cache={"enabled": False},
    )


@pytest.fixture
def captured(monkeypatch) -> dict:
    """The pruned torch module the export receives, kept for the comparison with the artifact."""
    seen = {}
    original = image_entry._pruned_source

    def keep(pruned, source):
        seen["module"] = pruned
        return original(pruned, source)

    monkeypatch.setattr(image_entry, "_pruned_source", keep)
    return seen


def artifact_logits(path: Path, images: list[str]) -> tuple[np.ndarray, np.ndarray]:
    session = load(path)
    feeds, _ = session.encoder.encode(images)
    output = session.manifest.outputs[0].name
    return session.run(feeds)[output], feeds[next(iter(feeds))]


def test_flops_target_met_and_the_artifact_is_the_pruned_model(trained, digits, captured, tmp_path):
    result = compile(
        trained,
        "x86-64-avx2",
        tmp_path / "art",
        recipe(flops=0.4, importance="taylor").with_overrides({"data.train": str(digits[0])}),
    )
    report = json.loads((result.path / "reports" / "pruning.json").read_text())
    assert 0.4 <= report["flops_reduction"] <= 0.4 + 0.05
    assert report["macs"]["after"] <= 0.6 * report["macs"]["before"]
    assert any(after < before for before, after in (layer["channels"] for layer in report["layers"]))
    assert report["accuracy_before"] is not None and report["importance"]["labels"] == "gold"
    images = sorted(str(p) for p in digits[1].glob("*/*.png"))[:40]
    got, pixels = artifact_logits(result.path, images)
    with torch.inference_mode():
        want = captured["module"].eval()(torch.from_numpy(pixels)).numpy()
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())
    manifest = result.manifest
    assert tuple(manifest.labels) == LABELS
    assert manifest.image == SPEC  # the declared preprocessing survives pruning
