"""torch.nn.Module (a small CNN, a two-input MLP) and plain .onnx files through the compiler."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from edgekiln.compiler import CompileError, Recipe, compile
from edgekiln.runtime import InputError, Task, load

ATOL = 1e-4


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
        )
        self.head = nn.Linear(16, 5)

    def forward(self, image):
        return self.head(self.features(image).mean(dim=(2, 3)))


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 4), nn.Linear(3, 4)

    def forward(self, x, y):
        return torch.tanh(self.a(x) + self.b(y)), self.a(x).sum(-1)


@pytest.fixture(scope="module")
def cnn_artifact(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyCNN().eval()
    out = tmp_path_factory.mktemp("cnn") / "artifact"
    result = compile(
        model,
        "x86-64-avx2",
        out,
        example_inputs=torch.randn(1, 3, 16, 16),
        recipe=Recipe.from_flags(input_names=["image"], output_names=["logits"]),
    )
    return model, result


def test_cnn_matches_pytorch_at_a_new_batch_size(cnn_artifact):
    model, result = cnn_artifact
    session = load(result.path)
    assert session.task is Task.RAW
    assert list(session.manifest.inputs[0].shape)[0] == "batch"
    images = np.random.default_rng(1).standard_normal((3, 3, 16, 16)).astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(session.run({"image": images})["logits"], expected, atol=ATOL)


def test_raw_artifact_refuses_text_and_checks_feeds(cnn_artifact):
    session = load(cnn_artifact[1].path)
    with pytest.raises(InputError, match="no tokenizer"):
        session.predict(["hello"])
    with pytest.raises(InputError, match="missing \\['image'\\]"):
        session.run({"img": np.zeros((1, 3, 16, 16), np.float32)})
    with pytest.raises(InputError, match="size 4 on axis 1, expected 3"):
        session.run({"image": np.zeros((1, 4, 16, 16), np.float32)})
    out = session.run({"image": np.zeros((2, 3, 16, 16), np.float64)})  # dtype converted
    assert out["logits"].shape == (2, 5)


def test_module_with_dict_inputs_and_two_outputs(tmp_path):
    torch.manual_seed(0)
    model = TwoInputs().eval()
    example = {"x": torch.randn(4, 6), "y": torch.randn(4, 3)}
    result = compile(
        model,
        "x86-64-avx2",
        tmp_path / "two",
        example_inputs=example,
        recipe=Recipe.from_flags(output_names=["h", "s"]),
    )
    x, y = np.ones((7, 6), np.float32), np.full((7, 3), 0.5, np.float32)
    out = load(result.path).run({"x": x, "y": y})
    with torch.inference_mode():
        h, s = model(torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_allclose(out["h"], h.numpy(), atol=ATOL)
    np.testing.assert_allclose(out["s"], s.numpy(), atol=ATOL)


def test_module_needs_example_inputs(tmp_path):
    with pytest.raises(CompileError, match="needs example_inputs"):
        compile(TinyCNN(), "x86-64-avx2", tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyCNN().eval()
    path = tmp_path_factory.mktemp("onnx") / "cnn.onnx"
    torch.onnx.export(
        model,
        (torch.randn(2, 3, 16, 16),),
        str(path),
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
        dynamo=False,
    )
    return model, path


def test_onnx_file_compiles_and_is_checked_against_itself(onnx_file, tmp_path):
    model, path = onnx_file
    result = compile(path, "x86-64-avx2", tmp_path / "from-onnx")
    assert [p.name for p in result.manifest.passes] == ["check_onnx", "ort_optimize", "verify_fidelity"]
    fidelity = json.loads((result.path / "reports" / "verify_fidelity.json").read_text())
    assert fidelity["reference"].startswith("source onnx") and fidelity["passed"]
    images = np.random.default_rng(2).standard_normal((4, 3, 16, 16)).astype(np.float32)
    with torch.inference_mode():
        expected = model(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(load(result.path).run({"image": images})["logits"], expected, atol=ATOL)


def test_truncated_onnx_is_a_clear_error(onnx_file, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(onnx_file[1].read_bytes()[:500])
    with pytest.raises(CompileError, match="broken.onnx is not a (readable|valid) ONNX model"):
        compile(broken, "x86-64-avx2", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.onnx"]  # nothing half-written


class Eigenvalues(nn.Module):
    def forward(self, x):
        return torch.linalg.eigvals(x).real


def test_export_failure_names_the_operator(tmp_path):
    from edgekiln.compiler import ExportError

    with pytest.raises(ExportError, match=r"dynamo: .*linalg_eig.* \| torchscript: .*aten::linalg_eigvals"):
        compile(
            Eigenvalues(),
            "x86-64-avx2",
            tmp_path / "eig",
            example_inputs=torch.randn(2, 4, 4),
            recipe=Recipe.from_flags(cache=False),
        )
    assert list(tmp_path.iterdir()) == []
