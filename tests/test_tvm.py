"""The TVM backend on tiny models: shape buckets against ONNX Runtime, padding and chunking in the
runtime, aarch64 cross-compilation, a CUDA build without a GPU, and the flags' errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest

pytest.importorskip("tvm", reason="the tvm extra is not installed")

from edgekiln.compiler import CompileError, Recipe, compile  # noqa: E402
from edgekiln.compiler.tvm_build.cuda import FATBIN_MAGIC  # noqa: E402
from edgekiln.runtime import BackendUnavailableError, InputError, load  # noqa: E402

from .conftest import LABELS_TEXT, _vocab  # noqa: E402

TEXTS = ["i love this movie", "john visited paris and london and the film was great fun", "bad"]
ATOL = 1e-4
BUCKETS = (16, 32)
ELF_MACHINE = {183: "aarch64", 62: "x86_64"}


def elf_machine(path) -> str:
    header = path.read_bytes()[:20]
    assert header[:4] == b"\x7fELF", f"{path.name} is not an ELF file"
    return ELF_MACHINE.get(int.from_bytes(header[18:20], "little"), "other")


@pytest.fixture(scope="module")
def tvm_artifacts(bert_folders, tmp_path_factory):
    root = tmp_path_factory.mktemp("tvm")
    return {
        kind: compile(
            bert_folders[kind],
            "x86-64-avx2",
            root / kind,
            recipe=Recipe.from_flags(backend="tvm", sequence_buckets=BUCKETS),
        ).path
        for kind in ("sequence", "encoder", "token")
    }


def test_artifact_holds_one_library_per_bucket(tvm_artifacts):
    manifest = json.loads((tvm_artifacts["sequence"] / "manifest.json").read_text())
    assert manifest["backend"] == "tvm" and manifest["model_file"] == "tvm.json"
    assert set(manifest["files"]) == {
        "tvm.json",
        "tvm_params.npz",
        "tvm_b1_s16.so",
        "tvm_b1_s32.so",
        "reference.npz",
        "tokenizer.json",
        "recipe.toml",
    }
    assert manifest["tokenizer"]["max_length"] == BUCKETS[-1], "the tokenizer must truncate to the longest bucket"
    report = json.loads((tvm_artifacts["sequence"] / "reports" / "lower_tvm.json").read_text())
    details = report["details"]
    assert details["buckets"] == [[1, 16], [1, 32]] and details["checked_on"] == "this build"
    assert report["max_abs_diff"] <= ATOL, f"max abs diff {report['max_abs_diff']:.3g} vs onnxruntime"
    assert elf_machine(tvm_artifacts["sequence"] / "tvm_b1_s16.so") == "x86_64"


@pytest.mark.parametrize("kind", ["sequence", "encoder", "token"])
def test_tvm_matches_onnxruntime_at_every_length(kind, tvm_artifacts, artifacts):
    """Lengths below, at and between the buckets, and a batch of 3 run as chunks of the batch-1 bucket."""
    ours, theirs = load(tvm_artifacts[kind]), load(artifacts[kind])
    rng = np.random.default_rng(0)
    for batch, length in ((1, 5), (1, 16), (3, 17), (2, 32)):
        feeds = {
            "input_ids": rng.integers(5, 60, (batch, length)),
            "attention_mask": np.ones((batch, length), int),
            "token_type_ids": np.zeros((batch, length), int),
        }
        feeds["attention_mask"][1:, length // 2 :] = 0
        got, want = ours.run(feeds), theirs.run(feeds)
        for name in want:
            assert got[name].shape == want[name].shape, f"{kind} {batch}x{length}: {name} shape"
            np.testing.assert_allclose(got[name], want[name], atol=ATOL, err_msg=f"{kind} {batch}x{length}: {name}")


def test_predict_truncates_to_the_longest_bucket(tvm_artifacts, artifacts):
    long_text = " ".join(["the movie was great fun"] * 20)
    ours, theirs = load(tvm_artifacts["token"]), load(artifacts["token"])
    tags = ours.predict([long_text])[0]
    assert tags and len(tags) < len(theirs.predict([long_text])[0]), "TVM tags must stop at the longest bucket"


def test_a_request_longer_than_every_bucket_is_refused(tvm_artifacts):
    session = load(tvm_artifacts["sequence"])
    feeds = {name: np.ones((1, 40), dtype=np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}
    with pytest.raises(InputError, match="sequence length 40; this model takes at most 32"):  # the longest bucket
        session.run(feeds)


def test_an_artifact_replaced_in_place_runs_its_own_library(tvm_artifacts, tmp_path):
    """dlopen hands back a library already loaded from the same path: an artifact written where another
    had been ran the old one's code (a ConvNeXt artifact called a ViT library's main)."""
    import shutil

    place = tmp_path / "model"
    shutil.copytree(tvm_artifacts["sequence"], place)
    first = load(place)
    assert next(iter(first.predict(["a film"]))).label
    shutil.rmtree(place)
    shutil.copytree(tvm_artifacts["token"], place)
    feeds = load(tvm_artifacts["token"]).encoder.encode(["john visited paris"])[0]
    expected = load(tvm_artifacts["token"]).run(feeds)
    got = load(place).run(feeds)
    assert {name: value.shape for name, value in got.items()} == {name: value.shape for name, value in expected.items()}
    for name in expected:
        np.testing.assert_array_equal(got[name], expected[name])


def test_tvm_artifact_runs_without_torch(tvm_artifacts):
    """As on a device where they are not installed: importing torch, transformers or onnx fails (tvm_ffi
    imports torch whenever it can, so merely checking sys.modules would not show the runtime's needs)."""
    script = (
        "import sys, importlib.abc\n"
        "class Absent(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'transformers', 'onnx', 'onnxslim'):\n"
        "            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Absent())\n"
        "import edgekiln.runtime as rt\n"
        f"print(rt.load({str(tvm_artifacts['token'])!r}).predict(['john went to paris'])[0][0].word)\n"
        "print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'transformers', 'onnx', 'onnxslim'))))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={"TVM_USE_RUNTIME_LIB": "1", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["john", ""], done.stdout


def test_verify_passes_on_the_build_machine(tvm_artifacts):
    from edgekiln.runtime.verify import verify_artifact

    report = verify_artifact(tvm_artifacts["encoder"])
    assert report["passed"], f"max abs diff {report['max_abs_diff']:.3g} vs the stored reference"


def test_aarch64_profile_cross_compiles(bert_folders, tmp_path):
    if not __import__("shutil").which("aarch64-linux-gnu-gcc"):
        pytest.skip("gcc-aarch64-linux-gnu is not installed (.ci/run installs it)")
    path = compile(
        bert_folders["sequence"],
        "arm64-cortex-a72",
        tmp_path / "arm",
        recipe=Recipe.from_flags(backend="tvm", sequence_buckets=(16,)),
    ).path
    assert elf_machine(path / "tvm_b1_s16.so") == "aarch64"
    report = json.loads((path / "reports" / "lower_tvm.json").read_text())
    assert report["details"]["target"]["mtriple"] == "aarch64-linux-gnu" and report["max_abs_diff"] <= ATOL
    assert "this machine's CPU" in report["details"]["checked_on"]
    with pytest.raises(BackendUnavailableError, match="compiled for aarch64; this machine is x86_64"):
        load(path)


def test_cuda_profile_builds_and_fails_clearly_without_a_gpu(bert_folders, tmp_path):
    if not __import__("shutil").which("nvcc"):
        pytest.skip("building CUDA kernels needs nvcc (the CUDA toolkit), which is not installed here")
    path = compile(
        bert_folders["sequence"],
        "nvidia-cuda",
        tmp_path / "cuda",
        recipe=Recipe.from_flags(backend="tvm", sequence_buckets=(16,)),
    ).path
    index = json.loads((path / "tvm.json").read_text())
    assert index["device"] == "cuda" and index["target"]["kind"] == "cuda"
    # the kernels' machine code is in the artifact: the stored CUDA source's hash names each fatbin
    (bucket,) = index["buckets"]
    (kernels,) = bucket["kernels"]
    assert (path / kernels["file"]).read_bytes()[:4] == FATBIN_MAGIC
    import tvm

    if tvm.cuda(0).exist:
        pytest.skip("a GPU is present: the no-GPU error cannot be checked here")
    # without a driver TVM's CUDA runtime does not load (libcuda.so.1); with one but no GPU: no device
    with pytest.raises(
        BackendUnavailableError, match="CUDA runtime could not be loaded: .*libcuda|no CUDA GPU is visible"
    ):
        load(path)


def _distilbert_with_bert_tokenizer(folder):
    """A tiny random DistilBERT classifier saved with a BERT WordPiece tokenizer, as many DistilBERT
    fine-tunes ship: the tokenizer produces token_type_ids, which DistilBERT never reads."""
    import torch
    import transformers

    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(_vocab()) + "\n")
    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(folder), do_lower_case=True)
    config = transformers.DistilBertConfig(
        vocab_size=len(_vocab()),
        dim=32,
        n_layers=2,
        n_heads=4,
        hidden_dim=64,
        max_position_embeddings=64,
        id2label=dict(enumerate(LABELS_TEXT)),
        label2id={label: i for i, label in enumerate(LABELS_TEXT)},
    )
    torch.manual_seed(0)
    transformers.DistilBertForSequenceClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_model_without_token_type_ids_compiles_and_matches_onnxruntime(tmp_path):
    """A BERT tokenizer beside a DistilBERT gives token_type_ids, which DistilBERT's forward does not take:
    the export leaves it out, and TVM's index lists only the inputs Relax `main` takes (issue 17:
    "gfunc.num_args == args.size() (37 vs. 38)")."""
    folder = _distilbert_with_bert_tokenizer(tmp_path / "distilbert")
    ours = compile(
        folder, "x86-64-avx2", tmp_path / "tvm", recipe=Recipe.from_flags(backend="tvm", sequence_buckets=(16,))
    ).path
    theirs = compile(folder, "x86-64-avx2", tmp_path / "ort").path
    assert json.loads((ours / "tvm.json").read_text())["inputs"] == ["input_ids", "attention_mask"]
    ours, theirs = load(ours), load(theirs)
    assert {spec.name for spec in ours.manifest.inputs} == {"input_ids", "attention_mask"}
    feeds, _ = theirs.encoder.encode(TEXTS)
    got, want = ours.run(feeds), theirs.run(feeds)
    np.testing.assert_allclose(got["logits"], want["logits"], atol=ATOL)
    assert [p.label for p in ours.predict(TEXTS)] == [p.label for p in theirs.predict(TEXTS)]


def test_bad_tvm_requests_fail_before_any_work(bert_folders, tmp_path):
    cases = [
        (dict(target="x86-64-avx2", backend="onnxruntime", tune_trials=8), "do not apply to the onnxruntime backend"),
        (dict(target="x86-64-avx2", tune_trials=8), "need a backend"),
        (dict(target="arm64-cortex-a72", backend="tvm", tune_trials=8), "tuning measures kernels on the machine"),
        (dict(target="x86-64-avx2", backend="tvm", sequence_buckets=(64, 32)), "bad sequence buckets"),
        (dict(target="x86-64-avx2", backend="tvm", quantize="dynamic"), "cannot run this quantization mode"),
        (dict(target="x86-64-avx2", backend="tvm", tune_trials=-1), "whole number >= 0"),
    ]
    for options, message in cases:
        with pytest.raises(CompileError, match=message):
            target = options.pop("target")
            compile(bert_folders["sequence"], target, tmp_path / "out", Recipe.from_flags(**options))
        assert list(tmp_path.iterdir()) == [], f"{options} left files behind"


def test_sequence_buckets_on_a_model_without_a_sequence_axis_are_refused(tmp_path):
    """Given explicitly, --sequence-buckets on a model with no sequence axis (an image model, an MLP) is
    one error, as on OpenVINO; it used to be accepted and ignored. The profile's default buckets are not."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 2), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        [weight],
    )
    path = tmp_path / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(CompileError, match="no sequence axis"):
        compile(path, "x86-64-avx2", tmp_path / "out", Recipe.from_flags(backend="tvm", sequence_buckets=(8,)))
    assert not (tmp_path / "out").exists()
    built = load(compile(path, "x86-64-avx2", tmp_path / "ok", Recipe.from_flags(backend="tvm")).path)
    np.testing.assert_allclose(built.run({"x": np.ones((1, 4), np.float32)})["y"], [[4.0, 4.0]], atol=1e-6)


def test_buckets_equal_to_the_checked_lengths_still_check_padding(tmp_path):
    """A mean over the sequence axis changes when a request is padded to its bucket. With buckets equal
    to the fidelity check's own lengths (8, 17, 64) no check length was ever padded, and the artifact
    gave wrong outputs at every other length: the check now pads to every bucket too."""
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.random.default_rng(0).standard_normal((16, 4)).astype(np.float32), "w")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0),
            helper.make_node("MatMul", ["m", "w"], ["y"]),
        ],
        "mean",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "seq", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [weight, axes],
    )
    path = tmp_path / "mean.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    recipe = Recipe.from_flags(backend="tvm", sequence_buckets=(8, 17, 64))
    with pytest.raises(CompileError, match="TVM differs") as error:
        compile(path, "x86-64-avx2", tmp_path / "out", recipe)
    assert "padding a request to this model's sequence buckets changes its results" in error.value.hint
    assert not (tmp_path / "out").exists()


def test_tuning_for_a_board_or_a_gpu_gives_a_hint_that_works(bert_folders, tmp_path):
    """A board: tune over RPC; a CUDA target: no tuning at all (--tune-remote measures CPU kernels)."""
    from edgekiln.compiler import CompileError, Recipe, compile

    with pytest.raises(CompileError) as board:
        compile(
            bert_folders["sequence"],
            "arm64-cortex-a72",
            tmp_path / "a",
            Recipe.from_flags(backend="tvm", tune_minutes=1),
        )
    assert "--tune-remote HOST:PORT" in board.value.hint
    with pytest.raises(CompileError) as gpu:
        compile(
            bert_folders["sequence"], "nvidia-cuda", tmp_path / "b", Recipe.from_flags(backend="tvm", tune_minutes=1)
        )
    assert "dlight schedules them" in str(gpu.value) and gpu.value.hint == "drop --tune-trials/--tune-minutes"


def test_the_compile_says_when_the_buckets_cut_texts_the_model_takes(tvm_artifacts, artifacts, capsys):
    from edgekiln.cli.build_commands import _say_tvm_cut

    details = json.loads((tvm_artifacts["sequence"] / "reports" / "lower_tvm.json").read_text())["details"]
    takes = json.loads((artifacts["sequence"] / "manifest.json").read_text())["tokenizer"]["max_length"]
    assert details["model_max_length"] == takes > BUCKETS[-1]
    _say_tvm_cut(details)
    assert capsys.readouterr().out == (
        f"tvm: texts longer than {BUCKETS[-1]} tokens are cut to {BUCKETS[-1]}, though the model takes {takes}: for "
        f"longer ones add a bucket, e.g. --sequence-buckets {','.join(map(str, [*BUCKETS, takes]))}\n"
    )
    _say_tvm_cut(details | {"model_max_length": BUCKETS[-1]})
    assert capsys.readouterr().out == ""
