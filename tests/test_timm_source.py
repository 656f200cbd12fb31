"""timm models (`timm:NAME --weights FILE`) with random weights saved here: artifacts match PyTorch on
real photos, edgekiln's image tensors match timm's own eval transform, labels, and the refusals.

Needs timm with a torchvision that imports beside this torch (CI's second leg: a venv with torch 2.14.1 and
torchvision 0.29.1); skipped where timm does not import."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from edgekiln.compiler import compile
from edgekiln.compiler.errors import CompileError
from edgekiln.compiler.recipe import Recipe
from edgekiln.compiler.sources.timm_model import image_spec
from edgekiln.runtime import load
from edgekiln.runtime.images.decode import load_rgb
from edgekiln.runtime.images.preprocess import ImagePreprocessor
from edgekiln.runtime.manifest import TensorSpec

from .image_helpers import photo, photos, timm_or_skip
from .test_cli import assert_one_line_error, run_cli

timm = timm_or_skip()

pytest.importorskip("PIL")
LOGITS_ABS = 1e-4  # random-weight logits are O(1): float32 export and graph optimisation stay far below
PIXELS_ABS = 1e-5
# name -> (classes, file): ImageNet-1k's head (timm's class names), a small head, a ViT with its own cfg
MODELS = {
    "resnet18": (1000, "resnet18.safetensors"),
    "mobilenetv3_small_050": (7, "mobilenetv3.pth"),
    "vit_tiny_patch16_224": (5, "vit.pt"),
}


def _create(name: str, classes: int, **overlay):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=classes, pretrained_cfg_overlay=overlay).eval()


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("timm-weights")
    files = {}
    for name, (classes, file) in MODELS.items():
        state = _create(name, classes).state_dict()
        path = folder / file
        if path.suffix == ".safetensors":
            save_file(state, str(path))
        elif name.startswith("vit"):  # as timm's train.py nests them (less the pickled args)
            torch.save({"state_dict": state, "epoch": torch.tensor(3)}, path)
        else:
            torch.save(state, path)
        files[name] = path
    return files


@pytest.fixture(scope="module")
def resnet_artifact(weights, tmp_path_factory):
    out = tmp_path_factory.mktemp("timm-art") / "resnet18"
    return compile("timm:resnet18", "host", out, Recipe.from_flags(weights=str(weights["resnet18"]))).path


def _timm_inputs(model, images) -> torch.Tensor:
    transform = timm.data.create_transform(**timm.data.resolve_data_config(model=model))
    return torch.stack([transform(image) for image in images])


@pytest.mark.parametrize(
    ("name", "backend"),
    [("resnet18", "onnxruntime"), ("vit_tiny_patch16_224", "onnxruntime"), ("mobilenetv3_small_050", "openvino")],
)
def test_artifact_matches_pytorch_on_photos(name, backend, weights, tmp_path):
    if backend != "onnxruntime":
        pytest.importorskip(backend)
    classes = MODELS[name][0]
    recipe = Recipe.from_flags(weights=str(weights[name]), backend=backend)
    result = compile(f"timm:{name}", "host", tmp_path / "art", recipe)
    manifest = result.manifest
    assert manifest.task.value == "image-classification" and manifest.backend == backend
    assert manifest.image is not None and manifest.image.crop_offset == "round"
    model = _create(name, classes)
    images = [load_rgb(path) for path in photos()]
    with torch.inference_mode():
        expected = model(_timm_inputs(model, images)).numpy()
    session = load(result.path)
    feeds, _ = session.encoder.encode(images)
    got = session.run(feeds)["logits"]
    assert got.shape == (len(images), classes)
    assert np.abs(got - expected).max() <= LOGITS_ABS
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))


# (arch, pretrained_cfg overlay): each default cfg (bicubic at crop_pct 0.95 / 0.875 / 0.9, ImageNet and
# 0.5 means), and settings some pretrained tags use: squash crops, crop_pct 1, bilinear, nearest, lanczos
PARITY = [
    ("resnet18", {}),
    ("mobilenetv3_small_050", {}),
    ("vit_tiny_patch16_224", {}),
    ("resnet18", {"crop_mode": "squash", "crop_pct": 0.9}),
    ("resnet18", {"crop_pct": 1.0, "interpolation": "bilinear"}),
    ("resnet18", {"crop_pct": 0.95, "interpolation": "nearest", "input_size": (3, 160, 160)}),
    ("resnet18", {"interpolation": "lanczos", "input_size": (3, 255, 255)}),
]


@pytest.mark.parametrize(("name", "overlay"), PARITY, ids=[f"{n}-{'-'.join(map(str, o.values()))}" for n, o in PARITY])
def test_image_tensors_match_timm_transforms_on_photos(name, overlay):
    model = _create(name, 3, **overlay)
    spec = image_spec(timm, model, name)
    height, width = spec.output_size()
    preprocessor = ImagePreprocessor(spec, [TensorSpec(name=spec.input, dtype="float32", shape=(1, 3, height, width))])
    images = [load_rgb(path) for path in photos()]
    expected = _timm_inputs(model, images).numpy()
    got = np.stack([preprocessor.tensor(image) for image in images])
    assert got.shape == expected.shape
    worst = np.abs(got - expected).reshape(len(images), -1).max(axis=1)
    assert worst.max() <= PIXELS_ABS, dict(zip([p.name for p in photos()], worst))
    with torch.inference_mode():
        np.testing.assert_array_equal(
            model(torch.from_numpy(got)).argmax(-1).numpy(), model(torch.from_numpy(expected)).argmax(-1).numpy()
        )


def test_imagenet_heads_get_timm_class_names(resnet_artifact):
    labels = load(resnet_artifact).manifest.labels
    assert labels is not None and len(labels) == 1000 and len(set(labels)) == 1000
    assert labels[0] == "tench, Tinca tinca" and labels[1] == "goldfish, Carassius auratus"
    assert sum(label.startswith("crane (") for label in labels) == 2  # the repeated name gains its synset


def test_run_prints_the_pytorch_top1_class(capsys, resnet_artifact):
    cat = photo("chelsea.png")
    model = _create("resnet18", 1000)
    with torch.inference_mode():
        best = int(model(_timm_inputs(model, [load_rgb(cat)])).argmax())
    code, out, err = run_cli(capsys, "run", str(resnet_artifact), str(cat), "--top", "3")
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == str(cat) and len(lines) == 4
    assert lines[1].split(None, 1)[1] == load(resnet_artifact).manifest.labels[best]


def test_cli_compile_with_a_labels_file_and_a_small_head(capsys, weights, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"kind {i}" for i in range(7)) + "\n")
    out = tmp_path / "art"
    argv = ["compile", "timm:mobilenetv3_small_050", "--weights", str(weights["mobilenetv3_small_050"])]
    code, stdout, err = run_cli(capsys, *argv, "--labels", str(labels), "--backend", "onnxruntime", "-o", str(out))
    assert code == 0, err
    assert "image-classification, onnxruntime" in stdout and "timm pretrained_cfg" in err
    assert load(out).manifest.labels == tuple(f"kind {i}" for i in range(7))
    recipe = Recipe.from_file(out / "recipe.toml")
    assert recipe.source.weights == str(weights["mobilenetv3_small_050"]) and len(recipe.source.labels) == 7
    labels.write_text("one\ntwo\n")
    code, _, err = run_cli(capsys, *argv, "--labels", str(labels), "-o", str(tmp_path / "again"))
    assert_one_line_error(code, err, "2 labels given for the 7 classes")


def test_eval_an_artifact_against_its_timm_model(capsys, weights, tmp_path):
    """`eval ART --against timm:NAME --weights FILE`: the fp32 artifact predicts what timm's model does."""
    file = str(weights["mobilenetv3_small_050"])
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"kind{i}" for i in range(7)) + "\n")
    art = tmp_path / "art"
    argv = ["compile", "timm:mobilenetv3_small_050", "--weights", file, "--labels", str(labels), "-o", str(art)]
    code, _, err = run_cli(capsys, *argv, "--backend", "onnxruntime")
    assert code == 0, err
    data = _photo_classes(tmp_path / "data", 7, 14)  # two real photos per class
    report = tmp_path / "eval.json"
    argv = ["eval", str(art), "--data", str(data), "--against", "timm:mobilenetv3_small_050", "--weights", file]
    code, _, err = run_cli(capsys, *argv)  # a 7-class head has no known names
    assert_one_line_error(code, err, "timm:mobilenetv3_small_050 records no label names", "--labels FILE")
    code, out, err = run_cli(capsys, *argv, "--labels", str(labels), "--json", str(report))
    assert code == 0, err
    result = json.loads(report.read_text())
    assert result["examples"] == 14 and result["agreement"] == 1.0
    assert result["against"]["target"] == "checkpoint timm:mobilenetv3_small_050"
    assert "prediction agreement: 100.00 %" in out


def _photo_classes(folder, classes: int, count: int):
    """A class-folder dataset of the real photos, `classes` folders named kind0, kind1, …"""
    for index, path in enumerate(photos()[:count]):
        (folder / f"kind{index % classes}").mkdir(parents=True, exist_ok=True)
        (folder / f"kind{index % classes}" / path.name).write_bytes(path.read_bytes())
    return folder


def test_a_timm_cnn_prunes_to_a_flops_target(capsys, weights, tmp_path):
    """`--prune-flops` on timm:NAME: the pruned module keeps timm's preprocessing and the labels given."""
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"kind{i}" for i in range(7)) + "\n")
    data = _photo_classes(tmp_path / "data", 7, 21)
    out = tmp_path / "art"
    argv = ["compile", "timm:mobilenetv3_small_050", "--weights", str(weights["mobilenetv3_small_050"])]
    argv += ["--labels", str(labels), "--backend", "onnxruntime", "-o", str(out), "--no-cache"]
    code, stdout, err = run_cli(
        capsys, *argv, "--prune-flops", "0.3", "--prune-importance", "taylor-label-free", "--data", str(data)
    )
    assert code == 0, err
    report = json.loads((out / "reports" / "pruning.json").read_text())
    assert report["flops_reduction"] >= 0.3, report
    session = load(out)
    assert session.manifest.labels == tuple(f"kind{i}" for i in range(7))
    model = _create("mobilenetv3_small_050", 7)
    assert session.manifest.image == image_spec(timm, model, "mobilenetv3_small_050")
    assert all(answer.label.startswith("kind") for answer in session.predict(photos()[:4]))


def test_a_timm_vit_prunes_heads_and_mlp_through_its_fused_qkv(capsys, weights, tmp_path):
    """timm's one qkv Linear is cut per head in all three segments; the cut replays from the cache."""
    data = _photo_classes(tmp_path / "data", 5, 10)
    argv = ["compile", "timm:vit_tiny_patch16_224", "--weights", str(weights["vit_tiny_patch16_224"])]
    argv += ["--backend", "onnxruntime", "--prune-flops", "0.3", "--prune-importance", "magnitude", "--data", str(data)]
    code, _, err = run_cli(capsys, *argv, "-o", str(tmp_path / "art"))
    assert code == 0, err
    report = json.loads((tmp_path / "art" / "reports" / "pruning.json").read_text())
    assert report["kind"] == "vit-heads-mlp" and report["flops_reduction"] >= 0.3, report
    assert any(layer["heads"][1] < layer["heads"][0] for layer in report["layers"])  # heads went, not only MLP
    assert report["encoder_flops"]["sequence"] == 197  # 14 x 14 patches and the class token
    code, _, err = run_cli(capsys, *argv, "-o", str(tmp_path / "again"))  # the same cut, from the cache
    assert code == 0, err
    assert "prune (cached)" in err
    first, again = (tmp_path / name / "model.onnx" for name in ("art", "again"))
    assert first.read_bytes() == again.read_bytes()


def test_a_timm_vit_the_cut_cannot_rewrite_is_refused(capsys, tmp_path):
    """A ViT with a LayerNorm over all heads' output (scale_attn_norm), as a timm folder."""
    model = timm.create_model("test_vit", pretrained=False, num_classes=5, scale_attn_norm=True)
    timm.models.save_for_hf(model, str(tmp_path / "vit"), safe_serialization=True)
    data = _photo_classes(tmp_path / "data", 5, 10)
    argv = ["compile", str(tmp_path / "vit"), "-o", str(tmp_path / "art"), "--prune-flops", "0.3"]
    code, _, err = run_cli(capsys, *argv, "--prune-importance", "magnitude", "--data", str(data))
    assert_one_line_error(code, err, "cannot cut timm block 0", "normalised over all heads")
    assert not (tmp_path / "art").exists()
    from edgekiln.compiler.pruning.timm_vit import is_timm_vit

    hiera = timm.create_model("sam2_hiera_tiny", pretrained=False)  # qkv Linears, but no ViT embed_dim
    assert not is_timm_vit(hiera)  # so it takes the attention refusal, not an AttributeError


def test_fused_qkv_importance_lands_on_the_right_head():
    """A head whose Q, K, V rows and output columns are zero scores 0 (magnitude) and is the one cut."""
    from edgekiln.compiler.pruning.config import Importance
    from edgekiln.compiler.pruning.importance import importance_scores
    from edgekiln.compiler.pruning.plan import plan_ratios
    from edgekiln.compiler.pruning.timm_vit import TimmViT

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, depth=2).eval()
    attn, width = vit.blocks[1].attn, vit.blocks[1].attn.head_dim
    with torch.no_grad():
        for third in range(3):
            start = third * attn.attn_dim + 2 * width
            attn.qkv.weight[start : start + width] = 0
            attn.qkv.bias[start : start + width] = 0
        attn.proj.weight[:, 2 * width : 3 * width] = 0
    heads, neurons = importance_scores(TimmViT(vit), [], Importance.MAGNITUDE)
    assert [len(h) for h in heads] == [3, 3] and heads[1][2] == 0 and min(heads[1][:2]) > 0
    assert plan_ratios(heads, neurons, 1 / 6, 0.0, 1).heads == ((0, 1, 2), (0, 1))


def test_heads_without_known_names_have_no_labels(weights, tmp_path):
    result = compile(
        "timm:vit_tiny_patch16_224",
        "host",
        tmp_path / "art",
        Recipe.from_flags(weights=str(weights["vit_tiny_patch16_224"])),
    )
    assert result.manifest.labels is None  # 5 classes: the runtime names them 0..4


def _refused(model: str, weights_file, tmp_path, *fragments: str) -> None:
    recipe = Recipe.from_flags(weights=str(weights_file))
    with pytest.raises(CompileError) as caught:
        compile(model, "host", tmp_path / "out", recipe)
    text = str(caught.value)
    assert "\n" not in text and caught.value.hint, text
    for fragment in fragments:
        assert fragment in text, text
    assert not (tmp_path / "out").exists()


def test_unknown_names_and_tags_suggest_close_ones(weights, tmp_path):
    path = weights["resnet18"]
    _refused("timm:resnet_18", path, tmp_path, "timm has no model 'resnet_18'", "did you mean", "resnet18")
    _refused("timm:resnet18.nope_in1k", path, tmp_path, "no pretrained tag 'nope_in1k'", "a1_in1k")


def test_bad_weights_files(weights, tmp_path):
    _refused("timm:resnet18", tmp_path / "absent.pth", tmp_path, "does not exist")
    _refused("timm:resnet18", weights["mobilenetv3_small_050"], tmp_path, "does not fit timm:resnet18", "missing")
    state = _create("resnet18", 1000).state_dict()
    state["conv1.weight"] = torch.zeros(8, 3, 7, 7)
    torch.save(state, tmp_path / "narrow.pth")
    _refused("timm:resnet18", tmp_path / "narrow.pth", tmp_path, "1 of another shape", "conv1.weight [8, 3, 7, 7]")
    torch.save([torch.zeros(2)], tmp_path / "list.pth")
    _refused("timm:resnet18", tmp_path / "list.pth", tmp_path, "not a state dict of tensors")
    torch.save({"state_dict": state, "args": argparse.Namespace(lr=0.1)}, tmp_path / "pickled.pth")
    _refused("timm:resnet18", tmp_path / "pickled.pth", tmp_path, "needs pickle", "argparse.Namespace", "weights_only")
    (tmp_path / "empty.pth").write_bytes(b"")
    _refused("timm:resnet18", tmp_path / "empty.pth", tmp_path, "cannot read weights file", "EOFError")
    (tmp_path / "cut.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    _refused("timm:resnet18", tmp_path / "cut.safetensors", tmp_path, "cannot read", "as safetensors")
    (tmp_path / "w.ckpt").write_bytes(b"")
    _refused("timm:resnet18", tmp_path / "w.ckpt", tmp_path, "cannot tell the format", ".safetensors")


def test_mismatched_keys_are_named_through_the_cli(capsys, weights, tmp_path):
    argv = ["compile", "timm:resnet34", "--weights", str(weights["resnet18"]), "-o", str(tmp_path / "out")]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "does not fit timm:resnet34", "missing (layer1.2.conv1.weight")


@pytest.mark.parametrize(
    ("overlay", "what"),
    [
        ({"crop_mode": "border"}, "crop_mode 'border' (supported: center, squash)"),
        ({"interpolation": "box"}, "interpolation 'box'"),
        ({"input_size": (3, 224, 192)}, "non-square 224x192 input with crop_mode center"),
    ],
)
def test_preprocessing_the_spec_cannot_reproduce_is_refused(overlay, what):
    with pytest.raises(CompileError, match="does not reproduce exactly") as caught:
        image_spec(timm, _create("resnet18", 3, **overlay), "resnet18")
    assert what in str(caught.value)
