"""Structured pruning on tiny models: heads and FFN neurons of a BERT classifier (checked against
the unpruned model with the same groups zeroed), a FLOPs target, reload of the pruned folder,
recovery, the three backends, a small CNN through Torch-Pruning, and the errors."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from edgekiln.cli.main import main
from edgekiln.compiler import CompileError, Recipe, compile
from edgekiln.compiler.pruning.apply import apply_plan
from edgekiln.compiler.pruning.config import Importance, PruneConfig, RecoveryConfig
from edgekiln.compiler.pruning.importance import importance_scores
from edgekiln.compiler.pruning.loading import CONFIG_KEY, load_pretrained, save_pretrained
from edgekiln.compiler.pruning.plan import plan_ratios
from edgekiln.runtime import load

from .test_finetune_eval import _entities, _sentiment

ATOL = 1e-5


def _named(path):
    """The tiny classifiers' labels are negative/positive: name the 0/1 labels alike."""
    rows = [line.rsplit("\t", 1) for line in path.read_text().splitlines()]
    names = {"0": "negative", "1": "positive"}
    path.write_text("\n".join(f"{text}\t{names.get(label, label)}" for text, label in rows) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("prune-data")
    return {
        "train": _named(_sentiment(root / "train.tsv", 160, 0)),
        "dev": _named(_sentiment(root / "dev.tsv", 40, 1)),
        "tags_train": str(_entities(root / "train.conll", 80, 0)),
        "tags_dev": str(_entities(root / "dev.conll", 30, 1)),
    }


@pytest.fixture(scope="module")
def pruned(bert_folders, data, tmp_path_factory):
    out = tmp_path_factory.mktemp("pruned") / "art"
    return compile(
        bert_folders["sequence"],
        "x86-64-avx2",
        out,
        recipe=Recipe.from_flags(
            backend="onnxruntime",
            prune=PruneConfig(heads=0.5, ffn=0.5),
            train_data=data["train"],
            eval_data=data["dev"],
        ),
    ).path


def _model(folder):
    return transformers.AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()


def _logits(model, seed: int = 0) -> np.ndarray:
    ids = torch.randint(5, 60, (3, 12), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.numpy()


def test_pruned_model_equals_the_original_with_those_groups_zeroed(bert_folders):
    """Removing a head or a neuron must compute exactly what zeroing its output weights computes."""
    original = _model(bert_folders["sequence"])
    plan = plan_ratios(*importance_scores(original, [], Importance.MAGNITUDE), 0.5, 0.5, 8)
    small, zeroed = copy.deepcopy(original), copy.deepcopy(original)
    apply_plan(small, plan)
    size = original.config.hidden_size // original.config.num_attention_heads
    with torch.no_grad():
        for layer, heads, neurons in zip(zeroed.bert.encoder.layer, plan.heads, plan.neurons):
            for head in set(range(original.config.num_attention_heads)) - set(heads):
                layer.attention.self.value.weight[head * size : (head + 1) * size] = 0
                layer.attention.self.value.bias[head * size : (head + 1) * size] = 0
            dropped = sorted(set(range(original.config.intermediate_size)) - set(neurons))
            layer.intermediate.dense.weight[dropped] = 0
            layer.intermediate.dense.bias[dropped] = 0
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in original.parameters())
    np.testing.assert_allclose(_logits(small), _logits(zeroed), atol=ATOL)


def test_pruned_folder_saves_and_reloads(bert_folders, tmp_path):
    original = _model(bert_folders["sequence"])
    plan = plan_ratios(*importance_scores(original, [], Importance.MAGNITUDE), 0.25, 0.4, 8)
    apply_plan(original, plan)
    save_pretrained(original, tmp_path / "small")
    recorded = json.loads((tmp_path / "small" / "config.json").read_text())[CONFIG_KEY]
    assert recorded["heads"] == list(plan.shape.heads) and recorded["intermediate_sizes"] == list(plan.shape.widths)
    reloaded = load_pretrained(transformers.AutoModelForSequenceClassification, tmp_path / "small")
    np.testing.assert_allclose(_logits(reloaded), _logits(original), atol=ATOL)


def test_artifact_report_and_shapes(pruned):
    report = json.loads((pruned / "reports" / "pruning.json").read_text())
    assert 0.4 <= report["flops_reduction"] <= 0.6, f"flops reduction {report['flops_reduction']:.3f}"
    for layer in report["layers"]:
        assert layer["heads"][1] >= 1, "a layer lost every head"
        assert layer["ffn"][1] % 8 == 0, f"FFN width {layer['ffn'][1]} is not a multiple of 8"
    assert sum(layer["heads"][1] for layer in report["layers"]) == 4
    assert report["accuracy_before"] is not None and report["accuracy_after_pruning"] is not None
    assert [p["name"] for p in json.loads((pruned / "manifest.json").read_text())["passes"]][0] == "prune"
    html = (pruned / "reports" / "report.html").read_text()
    assert "Structured pruning" in html and "data:image/png;base64" in html
    fidelity = json.loads((pruned / "reports" / "verify_fidelity.json").read_text())
    assert fidelity["passed"], "the pruned artifact must match the pruned PyTorch model"


@pytest.mark.parametrize("lora", [False, True])
def test_flops_target_and_recovery(lora, bert_folders, data, tmp_path):
    result = compile(
        bert_folders["sequence"],
        "x86-64-avx2",
        tmp_path / "art",
        recipe=Recipe.from_flags(
            backend="onnxruntime",
            prune=PruneConfig(flops=0.4),
            recover=RecoveryConfig(epochs=1, lora=lora),
            train_data=data["train"],
            eval_data=data["dev"],
        ),
    )
    report = json.loads((result.path / "reports" / "pruning.json").read_text())
    assert result.manifest.source == f"{Path(bert_folders['sequence']).name} (pruned)"  # not the cache's folder
    assert report["flops_reduction"] >= 0.4, f"asked for 0.4, got {report['flops_reduction']:.3f}"
    assert report["recovery"]["epochs"] and report["accuracy_after_recovery"] is not None
    assert report["accuracy_drop"] == pytest.approx(report["accuracy_before"] - report["accuracy_after_recovery"])


def test_a_recovery_that_makes_things_worse_keeps_the_pruned_model(bert_folders, data, tmp_path):
    """The pruned model before recovery is epoch 0 of the best-epoch choice: a learning rate that wrecks
    the model must not ship the wreck."""
    result = compile(
        bert_folders["sequence"],
        "x86-64-avx2",
        tmp_path / "art",
        recipe=Recipe.from_flags(
            backend="onnxruntime",
            prune=PruneConfig(flops=0.4),
            recover=RecoveryConfig(epochs=1, learning_rate=50.0),
            train_data=data["train"],
            eval_data=data["dev"],
        ),
    )
    report = json.loads((result.path / "reports" / "pruning.json").read_text())
    recovery = report["recovery"]
    # (the tiny model sits at chance, so its recovery epoch can only tie: a tie keeps the start too;
    # test_pruning_images has the case where the epoch is strictly worse)
    assert recovery["epochs"][0]["accuracy"] * 100 <= report["accuracy_after_pruning"]
    assert recovery["kept_epoch"] == 0
    assert report["accuracy_after_recovery"] == pytest.approx(report["accuracy_after_pruning"])


def test_recovery_from_unlabelled_text(bert_folders, data, tmp_path):
    """No labels: label-free scores, and recovery on text the unpruned model labels (pure distillation)."""
    text = tmp_path / "unlabelled.txt"
    text.write_text("\n".join(line.split("\t")[0] for line in Path(data["train"]).read_text().splitlines()[1:]) + "\n")
    result = compile(
        bert_folders["sequence"],
        "x86-64-avx2",
        tmp_path / "art",
        recipe=Recipe.from_flags(
            backend="onnxruntime",
            prune=PruneConfig(flops=0.3, importance=Importance.TAYLOR_LABEL_FREE),
            recover=RecoveryConfig(epochs=1),
            calibration=str(text),
            eval_data=data["dev"],
        ),
    )
    report = json.loads((result.path / "reports" / "pruning.json").read_text())
    assert "labelled by the unpruned model" in report["recovery"]["train"]
    assert report["recovery"]["config"]["alpha"] == 1.0 and report["accuracy_after_recovery"] is not None


def test_token_classifier_prunes_with_label_free_scores(bert_folders, data, tmp_path):
    result = compile(
        bert_folders["token"],
        "x86-64-avx2",
        tmp_path / "tok",
        recipe=Recipe.from_flags(
            backend="onnxruntime",
            prune=PruneConfig(heads=0.25, ffn=0.25, importance=Importance.TAYLOR_LABEL_FREE),
            train_data=data["tags_train"],
            eval_data=data["tags_dev"],
        ),
    )
    report = json.loads((result.path / "reports" / "pruning.json").read_text())
    assert report["metric"] == "entity_f1"
    assert load(result.path).predict(["john visited paris"])[0]


@pytest.mark.parametrize("backend", ["openvino", "tvm"])
def test_pruned_model_lowers_to_other_backends(backend, bert_folders, data, pruned, tmp_path):
    pytest.importorskip(backend, reason=f"the {backend} extra is not installed")
    other = compile(
        bert_folders["sequence"],
        "x86-64-avx2",
        tmp_path / backend,
        recipe=Recipe.from_flags(
            backend=backend,
            prune=PruneConfig(heads=0.5, ffn=0.5),
            train_data=data["train"],
            eval_data=data["dev"],
            sequence_buckets=(16,) if backend == "tvm" else None,
        ),
    ).path
    feeds = {
        "input_ids": np.array([[2, 40, 41, 42, 3]]),
        "attention_mask": np.ones((1, 5), np.int64),
        "token_type_ids": np.zeros((1, 5), np.int64),
    }
    np.testing.assert_allclose(load(other).run(feeds)["logits"], load(pruned).run(feeds)["logits"], atol=1e-4)


class SmallCnn(torch.nn.Module):
    """A torchvision-style net: Conv/BatchNorm/ReLU blocks, a residual add, a linear classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU())
        self.block = torch.nn.Sequential(
            torch.nn.Conv2d(32, 32, 3, padding=1),
            torch.nn.BatchNorm2d(32),
            torch.nn.ReLU(),
            torch.nn.Conv2d(32, 32, 3, padding=1),
            torch.nn.BatchNorm2d(32),
        )
        self.head = torch.nn.Sequential(
            torch.nn.Conv2d(32, 64, 3, stride=2, padding=1),
            torch.nn.BatchNorm2d(64),
            torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1),
            torch.nn.Flatten(),
            torch.nn.Linear(64, 10),
        )

    def forward(self, x):
        x = self.stem(x)
        return self.head(torch.relu(x + self.block(x)))


def test_cnn_channels_are_pruned_with_dependencies_fixed(tmp_path):
    torch.manual_seed(0)
    net = SmallCnn().eval()
    parameters = sum(p.numel() for p in net.parameters())
    example = torch.randn(2, 3, 16, 16)
    result = compile(
        net,
        "x86-64-avx2",
        tmp_path / "cnn",
        example_inputs=(example,),
        recipe=Recipe.from_flags(backend="onnxruntime", prune=PruneConfig(channels=0.5)),
    )
    report = json.loads((result.path / "reports" / "pruning.json").read_text())
    assert report["flops_reduction"] > 0.5, f"MACs reduced by {report['flops_reduction']:.2f} only"
    assert all(after < before for _, (before, after) in ((r["layer"], r["channels"]) for r in report["layers"]))
    out = load(result.path).run({result.manifest.inputs[0].name: np.random.rand(4, 3, 16, 16).astype(np.float32)})
    assert next(iter(out.values())).shape == (4, 10)
    assert sum(p.numel() for p in net.parameters()) == parameters, "the user's module must not be modified"


def test_bad_pruning_requests_are_one_clear_error(bert_folders, data, tmp_path, capsys):
    folder = str(bert_folders["sequence"])
    base = ["compile", folder, "--target", "x86-64-avx2", "--backend", "onnxruntime", "-o", str(tmp_path / "o")]
    cases = [
        (["--prune-heads", "1.0", "--data", data["train"]], "must be a fraction in [0, 1)"),
        (["--prune-flops", "0.99", "--data", data["train"]], "cannot be met"),
        (["--prune-heads", "0.3"], "needs labelled calibration data"),
        (["--prune-heads", "0.3", "--prune-importance", "magnitude", "--recover"], "--recover needs training text"),
        (["--prune-flops", "0.3", "--prune-heads", "0.2"], "sets the head and FFN ratios itself"),
        (["--recover"], "--recover fine-tunes after pruning"),
    ]
    for extra, message in cases:
        assert main(base + extra) == 2, extra
        err = capsys.readouterr().err.strip().splitlines()[-1]  # progress lines may come before it
        assert err.startswith("edgekiln: error:") and message in err, err
    assert not (tmp_path / "o").exists()
    with pytest.raises(CompileError, match="does not know the 'gpt2' architecture"):
        from edgekiln.compiler.pruning.structure import encoder_layers

        encoder_layers(
            transformers.GPT2ForSequenceClassification(transformers.GPT2Config(n_layer=1, n_embd=8, n_head=2))
        )
