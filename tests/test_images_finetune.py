"""Fine-tuning image classifiers (full, LoRA, resume, augmentation) on tiny random-weight models and a
tiny image folder of colour classes built here; the result compiles and its artifact matches PyTorch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PIL")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from edgekiln.cli.main import main
from edgekiln.compiler import compile
from edgekiln.compiler.data import DataError, DataTask, load_dataset
from edgekiln.compiler.evaluate import evaluate
from edgekiln.compiler.evaluate.predictors import image_encoder
from edgekiln.compiler.finetune import AugmentSettings, FinetuneConfig, LoraSettings, finetune
from edgekiln.compiler.finetune.image_batches import ImageBatches, augment
from edgekiln.compiler.finetune.inputs import model_encoder
from edgekiln.compiler.finetune.model import load_for_task, lora_targets, with_lora
from edgekiln.compiler.finetune.state import STATE_FILE
from edgekiln.compiler.sources.hf_image import image_spec
from edgekiln.runtime import load

from .conftest import make_bert_folder
from .image_helpers import make_image_folder

COLOURS = {"red": (200, 40, 40), "green": (40, 180, 60), "blue": (50, 60, 210)}


def colour_folder(root: Path, per_class: int, seed: int) -> Path:
    """Noisy images (sizes vary) whose class is their dominant colour; robust to crops and flips."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for name, rgb in COLOURS.items():
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            height, width = (int(side) for side in rng.integers(24, 48, size=2))
            noise = rng.normal(0, 45, size=(height, width, 3))
            pixels = np.clip(np.asarray(rgb) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _config(**overrides) -> FinetuneConfig:
    settings = dict(
        task=DataTask.IMAGE_CLASSIFICATION,
        epochs=3,
        learning_rate=3e-3,
        batch_size=8,
        seed=0,
        threads=1,
        augment=AugmentSettings(crop_scale=(0.5, 1.0)),
    )
    return FinetuneConfig(**{**settings, **overrides})


def _quiet(message: str) -> None:
    pass


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("colours")
    return colour_folder(root / "train", 16, 0), colour_folder(root / "dev", 6, 1)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("image-models")
    return {kind: make_image_folder(root / kind, kind) for kind in ("resnet", "vit")}


@pytest.fixture(scope="module")
def tuned(models, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned") / "resnet-colours"
    return finetune(
        models["resnet"], out, train_data=str(data[0]), eval_data=str(data[1]), config=_config(), log=_quiet
    )


def _weights(folder: Path) -> dict:
    return transformers.AutoModelForImageClassification.from_pretrained(str(folder)).state_dict()


def test_full_finetune_learns_the_data_classes(tuned):
    report = tuned.report
    assert report["best_metric"] >= 0.8, f"dev accuracy {report['best_metric']:.3f} (chance 0.33)"
    assert report["task"] == "image-classification" and [e["epoch"] for e in report["epochs"]] == [1, 2, 3]
    config = json.loads((tuned.path / "config.json").read_text())
    assert config["id2label"] == {"0": "blue", "1": "green", "2": "red"}
    assert config["label2id"] == {"blue": 0, "green": 1, "red": 2}
    assert (tuned.path / "preprocessor_config.json").is_file()
    assert not tuned.path.with_name(tuned.path.name + ".partial").exists()


def test_training_inputs_are_the_runtime_preprocessing(tuned, models, data):
    """Without augmentation the training tensors are exactly what the compiled artifact feeds."""
    train = load_dataset(str(data[0]))
    config = _config(augment=None)
    batches = ImageBatches(train, model_encoder(models["resnet"], config), train.labels, config)
    session_encoder = image_encoder(image_spec(tuned.path))
    indices = [0, 5, 20, 47]
    expected, _ = session_encoder.encode([train.examples[i].path for i in indices])
    np.testing.assert_array_equal(batches.tensors(indices, epoch=0)["pixel_values"], expected["pixel_values"])


def test_artifact_matches_pytorch_and_runs_images(tuned, data, tmp_path, capsys):
    artifact = compile(tuned.path, "x86-64-avx2", tmp_path / "artifact").path
    session = load(artifact, threads=1)
    images = sorted(str(path) for path in data[1].glob("*/*.png"))
    feeds, _ = session.encoder.encode(images)
    compiled = next(iter(session.run(feeds).values()))
    model = transformers.AutoModelForImageClassification.from_pretrained(str(tuned.path)).eval()
    with torch.inference_mode():
        reference = model(pixel_values=torch.from_numpy(feeds["pixel_values"])).logits.numpy()
    np.testing.assert_allclose(compiled, reference, rtol=1e-4, atol=1e-4)
    assert (compiled.argmax(1) == reference.argmax(1)).all()
    predictions = session.predict(images, top=1)
    assert [p.label for p in predictions] == [model.config.id2label[int(i)] for i in reference.argmax(1)]
    report = evaluate(artifact, load_dataset(str(data[1])), against=tuned.path)
    assert report["agreement"] == 1.0 and report["accuracy"] == pytest.approx(tuned.report["best_metric"])
    assert "top5_accuracy" not in report  # three classes: every label is in the top five
    assert main(["run", str(artifact), images[0], "--top", "1"]) == 0
    assert predictions[0].label in capsys.readouterr().out


@pytest.mark.parametrize("kind", ["vit", "resnet"])
def test_lora_merges_into_a_plain_checkpoint(models, data, tmp_path, kind):
    result = finetune(
        models[kind],
        tmp_path / "lora",
        train_data=str(data[0]),
        eval_data=str(data[1]),
        config=_config(lora=LoraSettings(rank=4), epochs=2, learning_rate=5e-3),
        log=_quiet,
    )
    assert result.report["method"] == "lora"
    assert result.report["parameters"]["trainable"] < result.report["parameters"]["total"] / 2
    assert not (result.path / "adapter_config.json").exists()
    weights = _weights(result.path)
    assert not any("lora" in name or "modules_to_save" in name for name in weights)
    base = _weights(models[kind])
    changed = [
        name for name in base if not name.startswith("classifier") and not torch.equal(base[name], weights[name])
    ]
    assert changed, "merging left the backbone as it was"
    assert evaluate(result.path, load_dataset(str(data[1])))["accuracy"] == pytest.approx(result.report["best_metric"])


def test_lora_targets_linears_and_ungrouped_convolutions(tmp_path):
    folder = tmp_path / "mobilenet"
    config = transformers.MobileNetV2Config(depth_multiplier=0.35, image_size=32, num_labels=3)
    transformers.MobileNetV2ForImageClassification(config).save_pretrained(folder)
    transformers.MobileNetV2ImageProcessor(size={"shortest_edge": 32}, crop_size=32).save_pretrained(folder)
    model = load_for_task(folder, DataTask.IMAGE_CLASSIFICATION, ("a", "b", "c"))
    targets = lora_targets(model)
    modules = dict(model.named_modules())
    assert targets and all(modules[name].groups == 1 for name in targets if isinstance(modules[name], torch.nn.Conv2d))
    assert any(modules[name].groups > 1 for name in modules if isinstance(modules[name], torch.nn.Conv2d))
    assert not any(name.startswith("classifier") for name in targets)
    wrapped = with_lora(model, DataTask.IMAGE_CLASSIFICATION, LoraSettings(rank=2))
    trainable = [name for name, p in wrapped.named_parameters() if p.requires_grad]
    assert any("lora_A" in name for name in trainable) and any("classifier" in name for name in trainable)


def test_interrupted_run_resumes_to_identical_weights(models, data, tuned, tmp_path):
    config = _config(save_every=3)
    out = tmp_path / "resumed"

    def interrupt(message: str) -> None:
        if message.startswith("epoch 2/"):
            raise KeyboardInterrupt

    args = dict(train_data=str(data[0]), eval_data=str(data[1]), config=config)
    with pytest.raises(KeyboardInterrupt):
        finetune(models["resnet"], out, log=interrupt, **args)
    assert (tmp_path / "resumed.partial" / STATE_FILE).is_file() and not out.exists()
    messages: list[str] = []
    result = finetune(models["resnet"], out, log=messages.append, **args)
    assert any(message.startswith("resuming from epoch 2") for message in messages)
    assert result.report["resumed"] and len(result.report["epochs"]) == 3
    straight, resumed = _weights(tuned.path), _weights(out)
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0, atol=0, msg=name)  # batch-norm statistics too


def test_augmentation_is_seeded_and_changes_the_tensors(models, data):
    train = load_dataset(str(data[0]))
    indices = list(range(0, 48, 3))

    def tensors(epoch: int = 0, **overrides) -> np.ndarray:
        config = _config(**overrides)
        batches = ImageBatches(train, model_encoder(models["resnet"], config), train.labels, config)
        return batches.tensors(indices, epoch)["pixel_values"]

    augmented = tensors()
    np.testing.assert_array_equal(augmented, tensors())  # same seed, same tensors
    plain = tensors(augment=None)
    assert all(not np.array_equal(a, p) for a, p in zip(augmented, plain))
    assert not np.array_equal(tensors(epoch=1), augmented) and not np.array_equal(tensors(seed=1), augmented)
    from PIL import Image

    image = Image.open(train.examples[0].path).convert("RGB")
    settings = AugmentSettings(crop_scale=(0.5, 1.0))
    mirrored = []
    for seed in range(16):
        flipped = np.asarray(augment(image, settings, np.random.default_rng(seed)))
        kept = np.asarray(augment(image, settings.model_copy(update={"flip": False}), np.random.default_rng(seed)))
        assert np.array_equal(flipped, kept) or np.array_equal(flipped, kept[:, ::-1])
        mirrored.append(not np.array_equal(flipped, kept))
    assert 0 < sum(mirrored) < 16


def test_cli_finetune_on_an_image_folder(models, data, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["finetune", str(models["vit"]), "--train", str(data[0]), "--eval", str(data[1]), "-o", str(out)]
    args += ["--epochs", "1", "--lr", "1e-3", "--crop-scale", "0.6", "--no-flip", "--threads", "1"]
    assert main(args) == 0
    report = json.loads((out / "train_report.json").read_text())
    assert report["config"]["augment"] == {"crop_scale": [0.6, 1.0], "crop_ratio": [0.75, 4 / 3], "flip": False}
    assert "next: edgekiln compile" in capsys.readouterr().out


def _one_line_error(capsys, argv: list[str], *fragments: str) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_bad_inputs_are_one_error_line(models, data, tmp_path, capsys):
    out = ["-o", str(tmp_path / "out"), "--threads", "1", "--epochs", "1"]
    one = tmp_path / "one-class"
    (one / "red").mkdir(parents=True)
    for image in sorted((data[0] / "red").glob("*.png"))[:3]:
        (one / "red" / image.name).write_bytes(image.read_bytes())
    _one_line_error(capsys, ["finetune", str(models["vit"]), "--train", str(one), *out], "single label", "two or more")
    broken = tmp_path / "broken"
    for name in ("red", "blue"):
        (broken / name).mkdir(parents=True)
        for image in sorted((data[0] / name).glob("*.png"))[:4]:
            (broken / name / image.name).write_bytes(image.read_bytes())
    (broken / "blue" / "bad.png").write_text("not an image")
    argv = ["finetune", str(models["resnet"]), "--train", str(broken), "--eval", str(broken), *out]
    _one_line_error(capsys, argv, "bad.png is not an image Pillow can read")
    bert = make_bert_folder(tmp_path / "bert", "sequence")
    capsys.readouterr()  # the folder's save progress
    _one_line_error(capsys, ["finetune", str(bert), "--train", str(data[0]), *out], "bert model", "image data")
    text = tmp_path / "text.tsv"
    text.write_text("sentence\tlabel\ngood film\t1\nbad film\t0\n" * 5)
    _one_line_error(capsys, ["finetune", str(models["vit"]), "--train", str(text), *out], "vit model", "text-class")
    argv = ["finetune", str(bert), "--train", str(text), "--no-flip", *out]
    _one_line_error(capsys, argv, "apply to image data")
    loose = tmp_path / "loose"
    loose.mkdir()
    for image in sorted((data[0] / "red").glob("*.png"))[:3]:
        (loose / image.name).write_bytes(image.read_bytes())
    _one_line_error(capsys, ["finetune", str(models["vit"]), "--train", str(loose), *out], "unlabelled images")


def test_the_head_is_kept_only_for_the_same_classes(models, data, tuned, tmp_path):
    messages: list[str] = []
    args = dict(train_data=str(data[0]), eval_data=str(data[1]), config=_config(epochs=1), log=messages.append)
    finetune(tuned.path, tmp_path / "again", **args)
    assert not any("fresh random weights" in message for message in messages)
    before = _weights(tuned.path)["classifier.1.weight"]
    model = load_for_task(models["resnet"], DataTask.IMAGE_CLASSIFICATION, ("blue", "green", "red"), fresh_head=True)
    assert model.config.id2label == {0: "blue", 1: "green", 2: "red"}
    assert not torch.equal(
        load_for_task(tuned.path, DataTask.IMAGE_CLASSIFICATION, ("blue", "green", "red"), fresh_head=True)
        .classifier[1]
        .weight,
        before,
    )
    finetune(models["resnet"], tmp_path / "fresh", **args)
    assert any("3 classes (blue, green, red) are not the model's (7 labels)" in message for message in messages)


def test_a_truncated_training_image_is_one_error_naming_it(data, models, tmp_path):
    broken = tmp_path / "truncated"
    for name in COLOURS:
        (broken / name).mkdir(parents=True)
        for image in sorted((data[0] / name).glob("*.png"))[:4]:
            (broken / name / image.name).write_bytes(image.read_bytes())
    whole = (broken / "red" / "0.png").read_bytes()
    (broken / "red" / "0.png").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"training image in .*truncated: .*0\.png is truncated or corrupt"):
        finetune(
            models["resnet"],
            tmp_path / "out",
            train_data=str(broken),
            eval_data=str(data[1]),
            config=_config(),
            log=_quiet,
        )


def test_a_head_the_checkpoint_lacks_keeps_transformers_initialisation(tmp_path):
    """Only a head loaded from the checkpoint is re-drawn; one the folder never had (a bare encoder's
    classifier) keeps the initialisation transformers gives it."""
    folder = make_bert_folder(tmp_path / "encoder", "encoder")
    heads = []
    for fresh in (False, True):
        torch.manual_seed(0)
        heads.append(load_for_task(folder, DataTask.TEXT_CLASSIFICATION, ("neg", "pos"), fresh_head=fresh).classifier)
    assert torch.equal(heads[0].weight, heads[1].weight)
    assert float(heads[1].weight.std()) < 0.03  # BERT's normal(0, 0.02), not PyTorch's default uniform
