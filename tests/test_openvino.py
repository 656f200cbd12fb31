"""The OpenVINO backend on tiny models: IR in the artifact, outputs against PyTorch, no torch at run time."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("openvino", reason="the openvino extra is not installed")

from edgekiln.compiler import CompileError, Recipe, compile  # noqa: E402
from edgekiln.runtime import load  # noqa: E402

TEXTS = ["i love this movie", "john visited paris and london", "bad"]
ATOL = 1e-4


@pytest.fixture(scope="module")
def ov_artifacts(bert_folders, tmp_path_factory):
    root = tmp_path_factory.mktemp("openvino")
    return {
        kind: compile(bert_folders[kind], "x86-64-avx2", root / kind, recipe=Recipe.from_flags(backend="openvino")).path
        for kind in ("sequence", "encoder", "token")
    }


def test_artifact_holds_ir_and_the_lowering_check(ov_artifacts):
    manifest = json.loads((ov_artifacts["sequence"] / "manifest.json").read_text())
    assert manifest["backend"] == "openvino" and manifest["model_file"] == "model.xml"
    assert set(manifest["files"]) == {"model.xml", "model.bin", "tokenizer.json", "reference.npz", "recipe.toml"}
    assert [p["name"] for p in manifest["passes"]][-1] == "lower_openvino"
    report = json.loads((ov_artifacts["sequence"] / "reports" / "lower_openvino.json").read_text())
    assert report["passed"] and report["max_abs_diff"] <= ATOL
    assert "OpenVINO against ONNX Runtime" in (ov_artifacts["sequence"] / "reports" / "report.html").read_text()


def test_openvino_matches_onnxruntime_on_every_task(ov_artifacts, artifacts):
    for kind in ("sequence", "encoder", "token"):
        ov, ort = load(ov_artifacts[kind]), load(artifacts[kind])
        feeds, _ = ort.encoder.encode(TEXTS)
        ours, theirs = ov.run(feeds), ort.run(feeds)
        for name in theirs:
            np.testing.assert_allclose(ours[name], theirs[name], atol=ATOL, err_msg=f"{kind}: {name}")


def test_results_are_not_overwritten_by_later_requests(ov_artifacts):
    session = load(ov_artifacts["encoder"])
    first = session.predict(["i love this movie"])
    kept = first.copy()
    session.predict(["the plot was boring and the acting was bad"])
    np.testing.assert_array_equal(first, kept)


def test_requests_read_the_callers_arrays_in_place_and_let_go_of_them(ov_artifacts):
    """The request reads the feeds without copying them; after the call it holds no reference to
    them, and non-contiguous or differently typed arrays give the same outputs."""
    import sys as _sys

    backend = load(ov_artifacts["sequence"]).backend
    feeds = load(ov_artifacts["sequence"]).encoder.encode(TEXTS)[0]
    expected = backend.run(feeds)
    before = {name: _sys.getrefcount(array) for name, array in feeds.items()}
    for _ in range(3):
        backend.run(feeds)
    assert {name: _sys.getrefcount(array) for name, array in feeds.items()} == before
    strided = {name: np.repeat(array, 2, axis=0)[::2] for name, array in feeds.items()}
    assert not all(array.flags.c_contiguous for array in strided.values())
    widened = {name: array.astype(np.int32) for name, array in feeds.items()}
    read_only = {name: array.copy() for name, array in feeds.items()}
    for array in read_only.values():
        array.flags.writeable = False  # np.frombuffer, a memmap: OpenVINO will not share these
    for variant in (strided, widened, read_only):
        got = backend.run(variant)
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name])
    first = backend.run(feeds)
    for array in feeds.values():
        array[:] = 0  # the caller reuses its buffers: the earlier results are unaffected
    for name in expected:
        np.testing.assert_array_equal(first[name], expected[name])


def test_openvino_artifact_runs_without_torch(ov_artifacts):
    script = (
        "import sys, edgekiln.runtime as rt\n"
        f"rt.load({str(ov_artifacts['token'])!r}).predict(['john went to paris'])\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_openvino_has_no_dynamic_quantization(bert_folders, tmp_path):
    with pytest.raises(CompileError, match="openvino backend cannot run this quantization mode"):
        compile(
            bert_folders["sequence"],
            "x86-64-avx2",
            tmp_path / "q",
            recipe=Recipe.from_flags(backend="openvino", quantize="dynamic"),
        )
    assert list(tmp_path.iterdir()) == []


def test_compiled_model_is_cached_for_the_next_load(ov_artifacts):
    import os
    from pathlib import Path

    session = load(ov_artifacts["sequence"])
    cache = Path(os.environ["EDGEKILN_CACHE"]) / "openvino" / session.manifest.artifact_id
    assert cache.is_dir() and any(cache.iterdir()), "OpenVINO wrote no compiled blob to the cache"


def test_the_cache_keeps_the_opened_artifact_and_drops_stale_ones(ov_artifacts, tmp_path, monkeypatch):
    """A device's cache stays within EDGEKILN_OPENVINO_CACHE_GB: opening an artifact removes the least
    recently used other artifacts' blobs; 0 runs without the cache; a bad value is one error line."""
    import os

    from edgekiln.runtime.errors import InputError

    monkeypatch.setenv("EDGEKILN_CACHE", str(tmp_path))
    stale = tmp_path / "openvino" / "0123abcd"
    stale.mkdir(parents=True)
    (stale / "blob").write_bytes(b"x" * 4096)
    os.utime(stale / "blob", (1, 1))
    os.utime(stale, (1, 1))
    monkeypatch.setenv("EDGEKILN_OPENVINO_CACHE_GB", "0.000001")  # 1 KiB: only the opened artifact stays
    session = load(ov_artifacts["sequence"])
    assert not stale.exists()
    assert [path.name for path in (tmp_path / "openvino").iterdir()] == [session.manifest.artifact_id]
    monkeypatch.setenv("EDGEKILN_CACHE", str(tmp_path / "off"))
    monkeypatch.setenv("EDGEKILN_OPENVINO_CACHE_GB", "0")
    assert load(ov_artifacts["sequence"]).predict(TEXTS) and not (tmp_path / "off").exists()
    monkeypatch.setenv("EDGEKILN_OPENVINO_CACHE_GB", "lots")
    with pytest.raises(InputError, match="EDGEKILN_OPENVINO_CACHE_GB='lots' is not a size"):
        load(ov_artifacts["sequence"])


def test_backend_choice_follows_the_profile_and_the_job():
    from edgekiln.compiler.planning import choose_backend
    from edgekiln.targets import load_profile

    server = load_profile("x86-64-avx512-vnni")  # prefers openvino
    spec, notes = choose_backend(server, Recipe())
    assert (spec.name, notes) == ("openvino", [])
    spec, notes = choose_backend(server, Recipe.from_flags(quantize="dynamic"))  # NNCF is static only
    assert spec.name == "onnxruntime" and "openvino cannot do this job" in notes[0]
    spec, notes = choose_backend(server, Recipe.from_flags(backend="tvm"))  # third preference, asked for
    assert (spec.name, notes) == ("tvm", [])


def test_bf16_precision_on_a_cpu_that_has_it(bert_folders, artifacts, tmp_path):
    from edgekiln.runtime import Precision
    from edgekiln.targets.host import detect_host

    with pytest.raises(CompileError, match="x86-64-avx2 does not list bf16"):
        compile(
            bert_folders["sequence"],
            "x86-64-avx2",
            tmp_path / "no",
            recipe=Recipe.from_flags(backend="openvino", precision="bf16"),
        )
    from edgekiln.compiler.planning import plan_build
    from edgekiln.targets import load_profile

    avx2 = load_profile("x86-64-avx2")
    listed = avx2.model_copy(update={"name": "bf16-claimed", "precisions": (*avx2.precisions, Precision.BF16)})
    with pytest.raises(CompileError, match="bf16-claimed's CPU ISA .* has none of avx512_bf16, amx_bf16"):
        plan_build(listed, Recipe.from_flags(backend="openvino", precision="bf16"), cache_root=None)
    with pytest.raises(CompileError, match="does not run on nvidia-cuda's accelerator"):
        compile(  # that profile's bf16 is its GPU's; OpenVINO runs on the CPU only
            bert_folders["sequence"],
            "nvidia-cuda",
            tmp_path / "no",
            recipe=Recipe.from_flags(backend="openvino", precision="bf16"),
        )
    with pytest.raises(CompileError, match="OpenVINO's float mode"):  # a target listing bf16, another backend
        plan_build(listed, Recipe.from_flags(backend="onnxruntime", precision="bf16"), cache_root=None)
    if Precision.BF16 not in detect_host().precisions:
        pytest.skip("this CPU has neither AVX-512 BF16 nor AMX")
    path = compile(
        bert_folders["encoder"],
        "host",
        tmp_path / "bf16",
        recipe=Recipe.from_flags(backend="openvino", precision="bf16"),
    ).path
    session = load(path)
    assert session.manifest.precision is Precision.BF16
    report = json.loads((path / "reports" / "lower_openvino.json").read_text())
    assert report["details"]["inference_precision"] == "bf16" and report["min_cosine"] >= 0.99
    ours, theirs = session.predict(TEXTS), load(artifacts["encoder"]).predict(TEXTS)
    cosine = (ours * theirs).sum(axis=1)  # unit-norm embeddings
    assert cosine.min() >= 0.99, f"bf16 embeddings' cosine to fp32 is {cosine.min():.4f}"


def test_a_manifest_naming_other_outputs_than_the_ir_is_refused(ov_artifacts, tmp_path):
    """A forged (resealed, unsigned) manifest renaming the output: runs answered under the IR's name."""
    import shutil

    from edgekiln.runtime import ArtifactError

    from .artifact_tools import edit_manifest

    copy = tmp_path / "copy"
    shutil.copytree(ov_artifacts["sequence"], copy)
    edit_manifest(copy, lambda m: m["outputs"][0].update(name="zz"), reseal=True)
    with pytest.raises(ArtifactError, match=r"the manifest's inputs .* and outputs \['zz'\] are not model.xml's"):
        load(copy)
