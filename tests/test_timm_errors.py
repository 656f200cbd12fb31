"""`timm:NAME` requests that fail before timm is needed, and the one-line error where timm does not import
(timm hidden from the import system: these run with or without timm installed)."""

from __future__ import annotations

import sys

import pytest

from edgekiln.compiler.errors import CompileError
from edgekiln.compiler.sources.timm_model import read_labels

from .test_cli import assert_one_line_error, run_cli


def _compile(capsys, tmp_path, *argv: str):
    return run_cli(capsys, "compile", *argv, "--target", "host", "-o", str(tmp_path / "out"))


def test_without_timm_the_error_says_how_to_install_it(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # as if not installed (None: ModuleNotFoundError)
    weights = tmp_path / "r18.safetensors"
    weights.write_bytes(b"unused: timm is checked first")
    code, _, err = _compile(capsys, tmp_path, "timm:resnet18", "--weights", str(weights))
    assert_one_line_error(code, err, "timm models (timm:NAME, timm folders) need timm", "torchvision==0.29.1 timm")
    assert not (tmp_path / "out").exists()
    folder = tmp_path / "timm-folder"  # a timm checkpoint folder: its config.json names an architecture
    folder.mkdir()
    (folder / "config.json").write_text('{"architecture": "resnet18", "num_classes": 3, "pretrained_cfg": {}}')
    code, _, err = _compile(capsys, tmp_path, str(folder))
    assert_one_line_error(code, err, "timm models (timm:NAME, timm folders) need timm", "not installed")


def test_a_timm_that_does_not_import_beside_this_torch_is_one_line(capsys, tmp_path, monkeypatch):
    fake = tmp_path / "site" / "timm"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text('raise RuntimeError("operator torchvision::nms does not exist")\n')
    monkeypatch.syspath_prepend(str(fake.parent))
    monkeypatch.delitem(sys.modules, "timm", raising=False)
    weights = tmp_path / "r18.safetensors"
    weights.write_bytes(b"unused: timm is checked first")
    code, _, err = _compile(capsys, tmp_path, "timm:resnet18", "--weights", str(weights))
    assert_one_line_error(code, err, "does not import beside this torch", "torchvision::nms", "torchvision==0.29.1")


def test_a_timm_id_without_weights_is_refused_edgekiln_never_downloads(capsys, tmp_path):
    code, _, err = _compile(capsys, tmp_path, "timm:resnet18")
    assert_one_line_error(code, err, "timm:resnet18 needs its weights file", "never downloads", "--weights FILE")


def test_weights_belong_to_a_timm_model(capsys, tmp_path):
    folder = tmp_path / "not-timm"
    folder.mkdir()
    code, _, err = _compile(capsys, tmp_path, str(folder), "--weights", str(tmp_path / "w.pth"))
    assert_one_line_error(code, err, "--weights gives the weights of a timm model", "timm:NAME")


def test_an_empty_timm_name_is_refused(capsys, tmp_path):
    code, _, err = _compile(capsys, tmp_path, "timm:", "--weights", str(tmp_path / "w.pth"))
    assert_one_line_error(code, err, "names no timm model", "timm:resnet18")


def test_labels_files(tmp_path):
    lines = tmp_path / "labels.txt"
    lines.write_text("cat\n\n dog \nbird\n")
    assert read_labels(lines) == ("cat", "dog", "bird")
    listed = tmp_path / "labels.json"
    listed.write_text('["a", "b"]')
    assert read_labels(listed) == ("a", "b")
    listed.write_text('{"0": "a"}')
    with pytest.raises(CompileError, match="JSON list of names"):
        read_labels(listed)
    lines.write_text("\n\n")
    with pytest.raises(CompileError, match="holds no names"):
        read_labels(lines)
    with pytest.raises(CompileError, match="cannot read labels file"):
        read_labels(tmp_path / "absent.txt")


def test_weights_without_batchnorm_step_counters_fit_as_torch_loads_them(tmp_path):
    """Converted checkpoints often lack BatchNorm's `num_batches_tracked`; torch's strict load fills it in."""
    import torch

    from edgekiln.compiler.sources.timm_model import check_fit

    expected = {"bn.weight": torch.ones(4), "bn.num_batches_tracked": torch.tensor(0), "fc.weight": torch.ones(2, 4)}
    check_fit(expected, {"bn.weight": torch.ones(4), "fc.weight": torch.ones(2, 4)}, "net", tmp_path / "w.pth")
    with pytest.raises(CompileError, match="1 missing \\(fc.weight\\)"):
        check_fit(expected, {"bn.weight": torch.ones(4)}, "net", tmp_path / "w.pth")


def test_eval_weights_belong_to_one_timm_model(capsys, tmp_path):
    data = tmp_path / "data"
    (data / "cat").mkdir(parents=True)
    weights = str(tmp_path / "w.pth")
    code, _, err = run_cli(capsys, "eval", str(tmp_path / "art"), "--data", str(data), "--weights", weights)
    assert_one_line_error(code, err, "--weights belongs to a timm:NAME model", "is not one", "drop --weights")
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\n")
    argv = ["eval", "timm:resnet18", "--data", str(data), "--against", "timm:resnet34", "--labels", str(labels)]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(
        code, err, "--labels belongs to one timm model (timm:NAME, or a timm folder)", "both timm:resnet18 and"
    )


def _image_classes(folder):
    from PIL import Image

    for label in ("cat", "dog"):
        (folder / label).mkdir(parents=True)
        for index in range(3):
            Image.new("RGB", (12, 12), (40 * index, 90, 0)).save(folder / label / f"{index}.png")
    return folder


def test_finetune_weights_belong_to_a_timm_model(capsys, tmp_path):
    data = _image_classes(tmp_path / "data")
    argv = ["finetune", "timm:resnet18", "--data", str(data), "-o", str(tmp_path / "out")]
    code, _, err = run_cli(capsys, *argv)
    assert_one_line_error(code, err, "timm:resnet18 needs its weights file", "never downloads")
    folder = tmp_path / "hf"
    folder.mkdir()
    argv = ["finetune", str(folder), "--weights", str(tmp_path / "w.pth"), "--data", str(data)]
    code, _, err = run_cli(capsys, *argv, "-o", str(tmp_path / "out"))
    assert_one_line_error(code, err, "--weights gives the weights of a timm model", "timm:NAME")
    assert not (tmp_path / "out").exists()
