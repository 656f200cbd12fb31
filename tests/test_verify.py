"""`edgekiln verify`: the reference outputs stored at compile time, checked where the artifact runs."""

from __future__ import annotations

import shutil

import numpy as np

from edgekiln.cli.main import main


def test_verify_passes_for_every_task(artifacts, capsys):
    for kind, path in artifacts.items():
        assert main(["verify", str(path)]) == 0, f"{kind}: {capsys.readouterr().err}"
        out = capsys.readouterr().out
        assert "PASS" in out and "2 reference cases" in out, out
        assert "(limit: max abs diff 0.0001)" in out and "{" not in out, out  # not a Python dict


def test_reference_holds_inputs_and_outputs(artifacts):
    with np.load(artifacts["token"] / "reference.npz") as stored:
        keys = set(stored.files)
        shapes = {key: stored[key].shape for key in keys}
    assert {"0/input/input_ids", "0/output/logits", "1/input/attention_mask", "1/output/logits"} <= keys
    assert shapes["0/output/logits"][:2] == shapes["0/input/input_ids"]


def test_tampered_reference_and_wrong_machine_are_one_line_errors(artifacts, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(artifacts["sequence"], copy)
    with np.load(copy / "reference.npz") as stored:
        arrays = {key: stored[key] for key in stored.files}
    arrays["0/output/logits"] = arrays["0/output/logits"] + 1.0
    np.savez(copy / "reference.npz", **arrays)
    assert main(["verify", str(copy)]) == 2
    assert "reference.npz" in capsys.readouterr().err  # the hash check catches it before any run
    assert main(["verify", str(artifacts["sequence"]), "--emulate"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgekiln: error: --emulate runs aarch64 artifacts") and "\n" not in err, err


def test_emulating_a_cuda_artifact_is_refused_before_qemu_starts(bert_folders, tmp_path, capsys):
    from edgekiln.compiler import compile

    path = compile(bert_folders["sequence"], "jetson-orin", tmp_path / "orin").path  # ONNX Runtime, CUDA
    capsys.readouterr()
    assert main(["verify", str(path), "--emulate"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--emulate runs the CPU only, and this artifact runs on jetson-orin's cuda accelerator" in err, err
    assert "\n" not in err
