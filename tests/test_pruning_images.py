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
from edgekiln.compiler.pruning.config import PruneConfig  # noqa: E402
from edgekiln.runtime import load  # noqa: E402
from edgekiln.runtime.images.spec import ImagePreprocessSpec  # noqa: E402

from .image_helpers import make_image_folder  # noqa: E402
from .test_cli import assert_one_line_error, run_cli  # noqa: E402

pytest.importorskip("transformers").utils.logging.get_verbosity()  # its stderr handler: made now, not under capsys

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


def kept_filters(model, pruned) -> list[frozenset[int]]:
    """Per conv layer, which of the original filters the pruned model kept (matched by their weights)."""
    kept = []
    for name, conv in model.named_modules():
        if isinstance(conv, torch.nn.Conv2d):
            cut = dict(pruned.named_modules())[name].weight.detach()
            rows = conv.weight.detach()[:, : cut.shape[1]]
            kept.append(frozenset(int((rows - row).abs().flatten(1).sum(1).argmin()) for row in cut))
    return kept


def searched(model, folder: Path | None, importance: str, *, shuffle_labels: bool = False):
    import copy

    from edgekiln.compiler.data import load_dataset
    from edgekiln.compiler.evaluate.predictors import image_encoder
    from edgekiln.compiler.pruning.cnn_data import batches
    from edgekiln.compiler.pruning.cnn_search import accumulate_gradients, prune_to_flops
    from edgekiln.compiler.pruning.config import Importance

    model = copy.deepcopy(model)
    if folder is not None:
        data = load_dataset(str(folder))
        labels = LABELS[::-1] if shuffle_labels else LABELS  # every image scored against a wrong class
        label_free = importance == "taylor-label-free"
        accumulate_gradients(model, batches(data, image_encoder(SPEC), labels), label_free=label_free)
    example = (torch.zeros(2, 3, 32, 32),)
    return prune_to_flops(model, example, Importance(importance), 0.4, 10, 1).model


def test_taylor_importance_uses_the_images_and_differs_from_magnitude(trained, digits):
    magnitude = kept_filters(trained, searched(trained, None, "magnitude"))
    taylor = kept_filters(trained, searched(trained, digits[0], "taylor"))
    wrong = kept_filters(trained, searched(trained, digits[0], "taylor", shuffle_labels=True))
    label_free = kept_filters(trained, searched(trained, digits[0], "taylor-label-free"))
    assert taylor != magnitude
    assert taylor != wrong  # the gold labels change the scores: the data is used
    assert label_free != magnitude


def test_recovery_brings_back_the_accuracy_pruning_lost(trained, digits, tmp_path):
    prune = recipe(flops=0.6, importance="magnitude").with_overrides(
        {"data.train": str(digits[0]), "data.eval": str(digits[1]), "recover": {"epochs": 3, "batch_size": 32}}
    )
    result = compile(trained, "x86-64-avx2", tmp_path / "art", prune)
    report = json.loads((result.path / "reports" / "pruning.json").read_text())
    assert report["flops_reduction"] >= 0.6
    before, after, recovered = (
        report[k] for k in ("accuracy_before", "accuracy_after_pruning", "accuracy_after_recovery")
    )
    assert recovered > after + 5, report
    assert recovered >= before - 10, report
    agreement = report["agreement_with_unpruned"]
    assert agreement["final"] > agreement["after_pruning"]
    assert report["recovery"]["epochs"][-1]["epoch"] == 3


def test_a_recovery_that_makes_things_worse_keeps_the_pruned_model(trained, digits, tmp_path):
    prune = recipe(flops=0.3, importance="magnitude").with_overrides(
        {
            "data.train": str(digits[0]),
            "data.eval": str(digits[1]),
            "recover": {"epochs": 1, "batch_size": 32, "learning_rate": 100.0},
        }
    )
    report = json.loads(
        (compile(trained, "x86-64-avx2", tmp_path / "art", prune).path / "reports" / "pruning.json").read_text()
    )
    after, recovered = report["accuracy_after_pruning"], report["accuracy_after_recovery"]
    assert report["recovery"]["epochs"][0]["accuracy"] < after, "the wrecking learning rate did not wreck"
    assert report["recovery"]["kept_epoch"] == 0 and recovered == pytest.approx(after)


def hf_cnn(folder: Path, kind: str) -> Path:
    """A random-weight transformers CNN for the ten digits, with its image processor."""
    import transformers as tf

    labels = dict(enumerate(LABELS))
    common = {"num_labels": 10, "id2label": labels, "label2id": {v: k for k, v in labels.items()}}
    torch.manual_seed(0)
    if kind == "resnet":
        config = tf.ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic", **common)
        model = tf.ResNetForImageClassification(config)
    elif kind == "convnext":
        config = tf.ConvNextConfig(num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], **common)
        model = tf.ConvNextForImageClassification(config)
    else:
        config = tf.MobileNetV2Config(depth_multiplier=0.5, image_size=32, **common)
        model = tf.MobileNetV2ForImageClassification(config)
    model.eval().save_pretrained(folder)
    tf.ConvNextImageProcessor(size={"shortest_edge": 32}, resample=2).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["resnet", "convnext", pytest.param("mobilenet_v2", marks=pytest.mark.slow)])
def test_a_hugging_face_cnn_folder_prunes_from_the_cli(kind, digits, captured, capsys, tmp_path):
    from edgekiln.compiler.sources.hf_image import image_spec

    folder = hf_cnn(tmp_path / kind, kind)
    out = tmp_path / "art"
    code, stdout, err = run_cli(
        capsys, "compile", str(folder), "--target", "x86-64-avx2", "-o", str(out), "--prune-flops", "0.3",
        "--prune-importance", "taylor-label-free", "--data", str(digits[0]), "--eval-data", str(digits[1]),
        "--no-cache",
    )  # fmt: skip
    assert code == 0, err
    assert "pruning: FLOPs -" in stdout
    report = json.loads((out / "reports" / "pruning.json").read_text())
    assert report["flops_reduction"] >= 0.3
    assert report["importance"]["labels"] == "model's predictions"
    assert report["agreement_with_unpruned"]["after_pruning"] is not None
    session = load(out)
    assert tuple(session.manifest.labels) == LABELS  # id2label
    assert session.manifest.image == image_spec(folder)  # the folder's preprocessing
    images = sorted(str(p) for p in digits[1].glob("*/*.png"))[:16]
    assert all(answer.label in LABELS for answer in session.predict(images))
    got, pixels = artifact_logits(out, images)
    with torch.inference_mode():
        want = captured["module"].eval()(torch.from_numpy(pixels)).numpy()
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())


def test_bad_combinations_are_one_line_errors(trained, digits, capsys, tmp_path):
    folder = hf_cnn(tmp_path / "resnet", "resnet")
    out = str(tmp_path / "art")
    code, _, err = run_cli(capsys, "compile", str(folder), "--target", "x86-64-avx2", "-o", out, "--prune-flops", "0.3")
    assert_one_line_error(code, err, "Taylor importance", "no --data")
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for image in sorted(digits[0].glob("*/*.png"))[:4]:
        (unlabelled / image.name).write_bytes(image.read_bytes())
    code, _, err = run_cli(
        capsys, "compile", str(folder), "--target", "x86-64-avx2", "-o", out, "--prune-flops", "0.3",
        "--data", str(unlabelled),
    )  # fmt: skip
    assert_one_line_error(code, err, "has no labels", "taylor-label-free")
    code, _, err = run_cli(
        capsys, "compile", str(folder), "--target", "x86-64-avx2", "-o", out, "--prune-flops", "0.3",
        "--prune-importance", "magnitude", "--recover",
    )  # fmt: skip
    assert_one_line_error(code, err, "--recover needs training images")
    code, _, err = run_cli(
        capsys, "compile", str(folder), "--target", "x86-64-avx2", "-o", out, "--prune-flops", "0.99",
        "--prune-importance", "magnitude",
    )  # fmt: skip
    assert_one_line_error(code, err, "--prune-flops 0.99 cannot be met")
    code, _, err = run_cli(
        capsys, "compile", str(folder), "--target", "x86-64-avx2", "-o", out, "--prune-heads", "0.3",
        "--prune-importance", "magnitude",
    )  # fmt: skip
    assert_one_line_error(code, err, "FLOPs target")
    code, _, err = run_cli(
        capsys, "compile", str(folder), "--target", "x86-64-avx2", "-o", out, "--prune-flops", "0.3",
        "--data", str(digits[0]), "--eval-data", str(tmp_path / "none"),
    )  # fmt: skip
    assert_one_line_error(code, err, "none")
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 32 * 32, 10))
    with pytest.raises(CompileError, match="has no Conv2d"):
        compile(mlp, "x86-64-avx2", tmp_path / "mlp", recipe(flops=0.3, importance="magnitude"))
    with pytest.raises(CompileError, match="declares no image preprocessing"):
        compile(
            trained,
            "x86-64-avx2",
            tmp_path / "raw",
            Recipe(prune=PruneConfig(flops=0.3, importance="magnitude")),
            example_inputs=torch.zeros(1, 3, 32, 32),
        )


def test_a_vit_folder_loses_heads_and_mlp_neurons(captured, capsys, tmp_path):
    """ViT's layers are found like the text encoders' (separate Q/K/V, a two-Linear MLP): heads and MLP
    neurons go to an encoder-FLOPs target, scored by Taylor on labelled images, then distilled."""
    from PIL import Image

    from edgekiln.compiler.sources.hf_image import image_spec

    from .image_helpers import LABELS as VIT_LABELS

    vit = make_image_folder(tmp_path / "vit", "vit")
    rng = np.random.default_rng(0)
    for label in VIT_LABELS:
        (tmp_path / "images" / label).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / label / f"{i}.png")
    out = tmp_path / "art"
    code, stdout, err = run_cli(
        capsys, "compile", str(vit), "--target", "x86-64-avx2", "-o", str(out), "--prune-flops", "0.3",
        "--data", str(tmp_path / "images"), "--recover",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((out / "reports" / "pruning.json").read_text())
    assert report["kind"] == "vit-heads-mlp" and report["flops_reduction"] >= 0.3
    assert report["recovery"]["epochs"][0]["agreement"] is not None
    assert report["encoder_flops"]["sequence"] == 17  # 4x4 patches and the class token
    shapes = [(layer["heads"], layer["ffn"]) for layer in report["layers"]]
    assert any(h[1] < h[0] or f[1] < f[0] for h, f in shapes), shapes
    session = load(out)
    assert tuple(session.manifest.labels) == VIT_LABELS and session.manifest.image == image_spec(vit)
    images = sorted(str(p) for p in (tmp_path / "images").glob("*/*.png"))[:10]
    got, pixels = artifact_logits(out, images)
    with torch.inference_mode():
        want = captured["module"].eval()(torch.from_numpy(pixels)).numpy()
    assert np.abs(got - want).max() <= 1e-4 * max(1.0, np.abs(want).max())


def test_unlabelled_images_score_and_recover_by_the_models_own_predictions(trained, digits, tmp_path):
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    for image in sorted(digits[0].glob("*/*.png"))[:160]:
        (unlabelled / image.name).write_bytes(image.read_bytes())
    prune = recipe(flops=0.4, importance="taylor-label-free").with_overrides(
        {"quantize.calibration": str(unlabelled), "data.eval": str(digits[1]), "recover": {"epochs": 1}}
    )
    result = compile(trained, "x86-64-avx2", tmp_path / "art", prune)
    report = json.loads((result.path / "reports" / "pruning.json").read_text())
    assert report["flops_reduction"] >= 0.4
    assert report["importance"] == {"images": 160, "data": str(unlabelled), "labels": "model's predictions"}
    assert report["recovery"]["train"] == str(unlabelled)
    assert report["data"]["train"] is None and report["data"]["calibration"] == str(unlabelled)
    assert report["accuracy_before"] is not None and report["agreement_with_unpruned"]["final"] is not None


def test_the_pruning_is_cached_and_rebuilt_without_pickle(trained, digits, tmp_path):
    """A second build takes the pruned model from the cache: the cut replayed on a fresh copy of the
    source and the stored weights loaded, giving the same artifact; the user's module is left as it was."""
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    grads = [None if p.grad is None else p.grad.clone() for p in trained.parameters()]
    prune = recipe(flops=0.4, importance="taylor").with_overrides(
        {"data.train": str(digits[0]), "cache": {"enabled": True, "dir": str(tmp_path / "cache")}}
    )
    first = compile(trained, "x86-64-avx2", tmp_path / "first", prune)
    second = compile(trained, "x86-64-avx2", tmp_path / "second", prune)
    records = [next(p for p in result.manifest.passes if p.name == "prune") for result in (first, second)]
    assert [r.cached for r in records] == [False, True]
    assert records[0].output_sha256 == records[1].output_sha256
    images = sorted(str(p) for p in digits[1].glob("*/*.png"))[:12]
    assert np.array_equal(artifact_logits(first.path, images)[0], artifact_logits(second.path, images)[0])
    assert all(torch.equal(v, state[k]) for k, v in trained.state_dict().items())
    assert all((a is None and p.grad is None) or torch.equal(a, p.grad) for a, p in zip(grads, trained.parameters()))
