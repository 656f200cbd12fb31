"""timm folders (timm's own checkpoint format: config.json naming the architecture, model.safetensors) and
fine-tuning timm models: `edgekiln finetune timm:NAME --weights FILE` (and a timm folder, full or LoRA)
writes a timm folder that compiles, evaluates and prunes like any model, with its preprocessing and labels.

Real labelled images: scikit-learn's digits (three classes). Needs timm (CI's second leg)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edgekiln.compiler import compile
from edgekiln.compiler.errors import CompileError
from edgekiln.compiler.recipe import Recipe
from edgekiln.compiler.sources.timm_folder import load_timm_folder
from edgekiln.compiler.sources.timm_model import image_spec
from edgekiln.runtime import load
from edgekiln.runtime.images.decode import load_rgb

from .image_helpers import photos, timm_or_skip
from .test_cli import assert_one_line_error, run_cli

timm = timm_or_skip()

PIL = pytest.importorskip("PIL.Image")
LOGITS_ABS = 1e-4
DIGITS = ("digit0", "digit1", "digit2")  # class folders, in the sorted order labels take


def _create(name: str, classes: int, **overlay):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=classes, pretrained_cfg_overlay=overlay).eval()


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Three classes of scikit-learn's real 8x8 digits as PNG class folders (40 images each)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    folder = tmp_path_factory.mktemp("digits")
    for digit, name in enumerate(DIGITS):
        (folder / name).mkdir()
        for index in np.flatnonzero(data.target == digit)[:40]:
            pixels = (data.images[index] * 255 / 16).astype(np.uint8)
            PIL.fromarray(pixels).convert("RGB").save(folder / name / f"{index}.png")
    return folder


@pytest.fixture(scope="module")
def start_weights(tmp_path_factory):
    """timm:test_resnet with a random 5-class head."""
    from safetensors.torch import save_file

    path = tmp_path_factory.mktemp("timm-start") / "start.safetensors"
    save_file(_create("test_resnet", 5).state_dict(), str(path))
    return path


@pytest.fixture(scope="module")
def tuned(digits, start_weights, tmp_path_factory):
    """That model fine-tuned in full on the digits: the timm folder written."""
    from edgekiln.compiler.data import DataTask
    from edgekiln.compiler.finetune import FinetuneConfig, finetune

    config = FinetuneConfig(task=DataTask.IMAGE_CLASSIFICATION, epochs=4, learning_rate=2e-3, batch_size=16)
    out = tmp_path_factory.mktemp("timm-tune") / "tuned"
    finetune("timm:test_resnet", out, train_data=str(digits), config=config, weights=start_weights, log=lambda _: None)
    return out


def _logits(module, images) -> np.ndarray:
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=module))
    with torch.inference_mode():
        return module(torch.stack([transform(PIL.open(path).convert("RGB")) for path in images])).numpy()


def test_finetune_a_timm_model_through_the_cli(capsys, digits, start_weights, tmp_path):
    argv = ["finetune", "timm:test_resnet", "--weights", str(start_weights), "--data", str(digits)]
    code, out, err = run_cli(capsys, *argv, "-o", str(tmp_path / "tuned"), "--epochs", "1", "--batch-size", "16")
    assert code == 0, err
    assert "classification head starts from fresh random weights" in err and "fine-tuning timm:test_resnet" in err
    assert f"next: edgekiln compile {tmp_path / 'tuned'}" in out
    assert sorted(path.name for path in (tmp_path / "tuned").iterdir()) == [
        "config.json",
        "model.safetensors",
        "train_report.json",
    ]


def test_the_tuned_timm_folder_learned_and_keeps_timm_s_cfg(tuned):
    config = json.loads((tuned / "config.json").read_text())
    assert config["architecture"] == "test_resnet" and config["num_classes"] == 3
    assert config["label_names"] == list(DIGITS)
    losses = [epoch["train_loss"] for epoch in json.loads((tuned / "train_report.json").read_text())["epochs"]]
    assert len(losses) == 4 and losses[-1] < losses[0], losses
    module, start = load_timm_folder(tuned).module, _create("test_resnet", 5)
    assert not torch.equal(module.conv1[0].weight, start.conv1[0].weight)  # the backbone trained too
    assert image_spec(timm, module, "test_resnet") == image_spec(timm, start, "test_resnet")


def test_the_tuned_folder_compiles_and_matches_pytorch(capsys, tuned, digits, tmp_path):
    art = tmp_path / "art"
    code, out, err = run_cli(capsys, "compile", str(tuned), "--backend", "onnxruntime", "-o", str(art))
    assert code == 0, err
    assert "timm pretrained_cfg" in err and "image-classification, onnxruntime" in out
    session = load(art)
    assert session.manifest.labels == DIGITS
    module = load_timm_folder(tuned).module
    assert session.manifest.image == image_spec(timm, module, "test_resnet")
    images = photos()[:8]
    feeds, _ = session.encoder.encode([load_rgb(path) for path in images])
    got, expected = session.run(feeds)["logits"], _logits(module, images)
    assert np.abs(got - expected).max() <= LOGITS_ABS
    report = tmp_path / "eval.json"
    argv = ["eval", str(art), "--data", str(digits), "--against", str(tuned), "--json", str(report)]
    code, _, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert json.loads(report.read_text())["agreement"] == 1.0


def test_lora_on_a_timm_folder_merges_into_a_plain_one(capsys, tuned, digits, tmp_path):
    folder = tuned
    out = tmp_path / "lora"
    argv = ["finetune", str(folder), "--data", str(digits), "-o", str(out), "--lora", "--epochs", "1"]
    code, _, err = run_cli(capsys, *argv, "--batch-size", "16")
    assert code == 0, err
    assert "fresh random weights" not in err  # the folder's labels are the data's: its head is kept
    report = json.loads((out / "train_report.json").read_text())
    assert report["method"] == "lora"
    assert report["parameters"]["trainable"] < report["parameters"]["total"] / 3, report["parameters"]
    before, after = load_timm_folder(folder).module, load_timm_folder(out).module  # strict: no LoRA keys left
    assert not torch.equal(before.conv1[0].weight, after.conv1[0].weight)  # adapters merged into the convs
    art = compile(out, "host", tmp_path / "art", Recipe.from_flags(backend="onnxruntime"))
    assert art.manifest.labels == DIGITS


def test_fine_tuning_keeps_a_folder_s_own_preprocessing(digits, tmp_path):
    """A timm folder with a non-default crop and filter: the tuned folder keeps them (so does its artifact)."""
    from edgekiln.compiler.data import DataTask
    from edgekiln.compiler.finetune import FinetuneConfig, finetune

    start = _create("test_resnet", 3, crop_pct=0.8, interpolation="bicubic")
    timm.models.save_for_hf(start, str(tmp_path / "start"), safe_serialization=True)
    config = FinetuneConfig(task=DataTask.IMAGE_CLASSIFICATION, epochs=1, batch_size=16, max_train_examples=32)
    finetune(tmp_path / "start", tmp_path / "tuned", train_data=str(digits), config=config, log=lambda _: None)
    tuned = load_timm_folder(tmp_path / "tuned").module
    assert image_spec(timm, tuned, "test_resnet") == image_spec(timm, start, "test_resnet")
    assert image_spec(timm, start, "test_resnet").size == (200,)  # floor(160 / 0.8): not timm's default 0.95


def test_eval_takes_labels_for_a_timm_folder_without_names(capsys, digits, tmp_path):
    timm.models.save_for_hf(_create("test_resnet", 3), str(tmp_path / "bare"), safe_serialization=True)
    argv = ["eval", str(tmp_path / "bare"), "--data", str(digits)]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "records no label names", "--labels FILE")
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(DIGITS) + "\n")
    code, out, err = run_cli(capsys, *argv, "--labels", str(labels))
    assert code == 0, err
    assert "accuracy" in out


def test_a_timm_hub_folder_compiles_with_its_own_cfg(tmp_path):
    """A folder as timm saves it (save_for_hf), ImageNet-sized head, no label names, its own crop and filter."""
    model = _create("test_resnet", 1000, crop_pct=0.8, interpolation="bicubic")
    timm.models.save_for_hf(model, str(tmp_path / "hub"), safe_serialization=True)
    art = compile(tmp_path / "hub", "host", tmp_path / "art", Recipe.from_flags(backend="onnxruntime"))
    spec = art.manifest.image
    assert spec.size == (200,) and spec.interpolation.value == "bicubic"  # floor(160 / 0.8), not timm's default
    assert art.manifest.labels[0] == "tench, Tinca tinca"  # ImageNet-1k's names for a 1000-class head
    images = photos()[:4]
    top = [answer.label for answer in load(art.path).predict(images)]
    assert top == [art.manifest.labels[i] for i in _logits(model, images).argmax(-1)]


def test_a_timm_folder_prunes_to_a_flops_target(capsys, tuned, digits, tmp_path):
    folder = tuned
    out = tmp_path / "pruned"
    argv = ["compile", str(folder), "--backend", "onnxruntime", "-o", str(out), "--no-cache", "--prune-flops", "0.3"]
    code, _, err = run_cli(capsys, *argv, "--prune-importance", "taylor", "--data", str(digits))
    assert code == 0, err
    assert json.loads((out / "reports" / "pruning.json").read_text())["flops_reduction"] >= 0.3
    assert load(out).manifest.labels == DIGITS


def test_timm_folder_refusals(capsys, tuned, start_weights, tmp_path):
    folder = tuned
    argv = ["compile", str(folder), "--weights", str(start_weights), "-o", str(tmp_path / "out")]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "is a timm folder and holds its own weights", "drop --weights")
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text((folder / "config.json").read_text())
    with pytest.raises(CompileError, match="holds no weights"):
        compile(bare, "host", tmp_path / "a", Recipe.from_flags())
    config = json.loads((folder / "config.json").read_text())
    (bare / "model.safetensors").write_bytes((folder / "model.safetensors").read_bytes())
    (bare / "config.json").write_text(json.dumps({**config, "architecture": "resnet_9000"}))
    with pytest.raises(CompileError, match="names architecture 'resnet_9000'"):
        compile(bare, "host", tmp_path / "b", Recipe.from_flags())
    (bare / "config.json").write_text(json.dumps({**config, "architecture": "resnet18"}))
    with pytest.raises(CompileError, match="does not fit timm:resnet18"):
        compile(bare, "host", tmp_path / "c", Recipe.from_flags())
    argv = ["finetune", str(folder), "--weights", str(start_weights), "--data", "absent", "-o", str(tmp_path / "f")]
    code, _, err = run_cli(capsys, *argv)  # refused before the data is read
    assert_one_line_error(code, err, "holds its own weights")
    text = tmp_path / "text.tsv"
    text.write_text("sentence\tlabel\n" + "".join(f"words {i}\t{i % 2}\n" for i in range(20)))
    code, _, err = run_cli(capsys, "finetune", str(folder), "--data", str(text), "-o", str(tmp_path / "t"))
    assert_one_line_error(code, err, "is an image classifier, but the data is text-classification data")
    assert not (tmp_path / "t").exists()
