"""Image classifiers end to end: tiny random-weight transformers ViT, ConvNeXt and ResNet compiled
for ONNX Runtime and OpenVINO match PyTorch on real photos; `edgekiln run`, `eval` and `bench` on an
image artifact through the CLI; calibration from an unlabelled image folder."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgekiln.compiler import compile
from edgekiln.compiler.recipe import Recipe
from edgekiln.runtime import load

from .image_helpers import LABELS, make_image_folder, photo, photos
from .test_cli import assert_one_line_error, run_cli

pytest.importorskip("PIL")
LOGITS_ABS = 1e-4


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("image-models")
    return {kind: make_image_folder(root / kind, kind) for kind in ("vit", "convnext", "resnet")}


@pytest.fixture(scope="module")
def vit_artifact(folders, tmp_path_factory):
    return compile(
        folders["vit"], "host", tmp_path_factory.mktemp("art") / "vit", Recipe.from_flags(backend="onnxruntime")
    ).path


def _torch_logits(folder, images):
    import torch
    import transformers

    processor = transformers.AutoImageProcessor.from_pretrained(str(folder))
    model = transformers.AutoModelForImageClassification.from_pretrained(str(folder)).eval()
    with torch.inference_mode():
        pixels = torch.from_numpy(processor(images=images, return_tensors="np")["pixel_values"])
        return model(pixel_values=pixels).logits.numpy()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "tvm"])
@pytest.mark.parametrize("kind", ["vit", "convnext", "resnet"])
def test_compiled_classifier_matches_pytorch_on_photos(kind, backend, folders, tmp_path):
    if backend != "onnxruntime":
        pytest.importorskip(backend)
    from edgekiln.runtime.images.decode import load_rgb

    result = compile(folders[kind], "host", tmp_path / "art", Recipe.from_flags(backend=backend))
    manifest = result.manifest
    assert manifest.task.value == "image-classification" and manifest.labels == LABELS
    assert manifest.image is not None and manifest.inputs[0].shape[0] == "batch"
    assert [p.name for p in manifest.passes][:3] == ["export_onnx", "ort_optimize", "verify_fidelity"]
    session = load(result.path)
    paths = photos()
    expected = _torch_logits(folders[kind], [load_rgb(path) for path in paths])
    feeds, _ = session.encoder.encode(paths)
    got = session.run(feeds)["logits"]
    assert np.abs(got - expected).max() <= LOGITS_ABS
    np.testing.assert_array_equal(got.argmax(-1), expected.argmax(-1))
    predictions = session.predict(paths, top=3)
    assert [p.label for p in predictions] == [LABELS[i] for i in expected.argmax(-1)]
    assert all(len(p.scores) == 3 and list(p.scores)[0] == p.label for p in predictions)
    fidelity = json.loads((result.path / "reports" / "verify_fidelity.json").read_text())
    assert [row["sequence"] for row in fidelity["shapes"]] == [None] * 3  # an image has no sequence axis


def test_run_prints_the_top_labels(capsys, vit_artifact, folders):
    cat = photo("chelsea.png")
    code, out, err = run_cli(capsys, "run", str(vit_artifact), str(cat), str(photo("rocket.jpg")), "--top", "2")
    assert code == 0, err
    blocks = out.strip().split("\n")
    assert blocks[0] == str(cat) and len(blocks) == 6
    code, out, _ = run_cli(capsys, "run", str(vit_artifact), str(cat), "--json")
    record = json.loads(out)[0]
    best = LABELS[int(_torch_logits(folders["vit"], [_rgb(cat)]).argmax())]
    assert (
        record["image"] == str(cat) and record["label"] == best and len(record["scores"]) == 5
    )  # --top 5 of 7 classes


def _rgb(path):
    from edgekiln.runtime.images.decode import load_rgb

    return load_rgb(path)


def test_inspect_shows_the_first_labels_and_how_many_more(capsys, vit_artifact, monkeypatch):
    monkeypatch.setattr("edgekiln.cli.artifact_commands.LABELS_SHOWN", 3)
    code, out, _ = run_cli(capsys, "inspect", str(vit_artifact))
    assert code == 0 and "7: cat, coffee, rocket, … (4 more; --json lists all)" in out
    code, out, _ = run_cli(capsys, "inspect", "--json", str(vit_artifact))
    assert json.loads(out)["labels"] == list(LABELS)


def test_run_on_a_bad_image_is_one_error(capsys, vit_artifact, tmp_path):
    bad = tmp_path / "cat.png"
    bad.write_bytes(photo("chelsea.png").read_bytes()[:5000])
    code, _, err = run_cli(capsys, "run", str(vit_artifact), str(bad))
    assert_one_line_error(code, err, str(bad), "truncated or corrupt")
    code, _, err = run_cli(capsys, "run", str(vit_artifact), str(tmp_path / "none.jpg"))
    assert_one_line_error(code, err, "does not exist")


def test_top_on_a_text_artifact_is_one_error(capsys, artifacts):
    code, _, err = run_cli(capsys, "run", str(artifacts["sequence"]), "a good film", "--top", "2")
    assert_one_line_error(code, err, "take no options")


def _image_folder(root, with_labels=True):
    """A class-per-sub-folder layout of real photos, labelled with the tiny model's label names."""
    names = {"cat": ["chelsea.png", "coffee.png"], "rocket": ["rocket.jpg", "astronaut.png", "motorcycle_left.png"]}
    for label, files in names.items():
        (root / label).mkdir(parents=True)
        for name in files:
            shutil.copy(photo(name), root / label / name)
    return root


def test_eval_on_an_image_folder_and_against_the_checkpoint(capsys, vit_artifact, folders, tmp_path):
    data = _image_folder(tmp_path / "data")
    report_file = tmp_path / "report.json"
    code, out, err = run_cli(
        capsys,
        "eval",
        str(vit_artifact),
        "--data",
        str(data),
        "--against",
        str(folders["vit"]),
        "--json",
        str(report_file),
    )
    assert code == 0, err
    report = json.loads(report_file.read_text())
    expected = _torch_logits(
        folders["vit"], [_rgb(p) for p in sorted((data / "cat").iterdir()) + sorted((data / "rocket").iterdir())]
    )
    gold = [0, 0, 2, 2, 2]
    assert report["examples"] == 5 and report["agreement"] == 1.0
    assert report["accuracy"] == pytest.approx(np.mean(expected.argmax(-1) == gold))
    top5 = np.argsort(-expected, axis=1)[:, :5]
    assert report["top5_accuracy"] == pytest.approx(np.mean([g in row for g, row in zip(gold, top5)]))
    predicted = sorted({LABELS[i] for i in expected.argmax(-1)} - {"cat", "rocket"})
    assert [row["label"] for row in report["per_class"]] == ["cat", "rocket", *predicted]  # data's, then predicted
    assert report["micro_f1"] == pytest.approx(report["accuracy"])
    assert "top-5 accuracy" in out


def test_eval_skips_unreadable_images_only_when_asked(capsys, vit_artifact, folders, tmp_path):
    data = _image_folder(tmp_path / "data")
    broken = data / "cat" / "broken.jpg"
    broken.write_bytes(photo("chelsea.png").read_bytes()[:300])  # a truncated file
    (data / "rocket" / "notes.png").write_text("not an image")
    (data / "horse").mkdir()  # a class whose one image is unreadable: scored by neither model
    (data / "horse" / "zz.png").write_text("not an image either")
    code, _, err = run_cli(capsys, "eval", str(vit_artifact), "--data", str(data))
    assert_one_line_error(code, err, str(broken))
    assert "--skip-bad-images" in err
    report_file = tmp_path / "report.json"
    args = ["--data", str(data), "--skip-bad-images", "--json", str(report_file), "--batch-size", "3"]
    code, out, err = run_cli(capsys, "eval", str(vit_artifact), *args, "--against", str(folders["vit"]))
    assert code == 0, err
    report = json.loads(report_file.read_text())
    skipped = [str(broken), str(data / "horse" / "zz.png"), str(data / "rocket" / "notes.png")]
    assert [row["path"] for row in report["skipped_images"]] == skipped
    assert [row["path"] for row in report["against"]["skipped_images"]] == skipped
    assert report["examples"] == 5 and report["against"]["examples"] == 5 and report["agreement"] == 1.0
    assert "horse" not in [row["label"] for row in report["per_class"]]
    assert report["difference"] == {key: 0.0 for key in report["difference"]}
    assert "note: 3 unreadable images left out (first: " in out
    shutil.rmtree(data / "rocket")
    shutil.rmtree(data / "horse")
    broken.unlink()
    code, out, err = run_cli(capsys, "eval", str(vit_artifact), "--data", str(data), "--json", str(report_file))
    clean = json.loads(report_file.read_text())
    assert code == 0 and "skipped_images" not in clean and clean["examples"] == 2
    assert clean["accuracy"] == pytest.approx(report["per_class"][0]["recall"])  # the same 2 cats scored


def test_skip_bad_images_on_text_data_is_refused(capsys, artifacts, tmp_path):
    table = tmp_path / "dev.tsv"
    table.write_text("sentence\tlabel\na good film\tpositive\n")
    code, _, err = run_cli(capsys, "eval", str(artifacts["sequence"]), "--data", str(table), "--skip-bad-images")
    assert_one_line_error(code, err, "--skip-bad-images is for image data")


def test_eval_of_text_data_on_an_image_model_names_both_tasks(capsys, vit_artifact, tmp_path):
    table = tmp_path / "dev.tsv"
    table.write_text("sentence\tlabel\na good film\tcat\n")
    code, _, err = run_cli(capsys, "eval", str(vit_artifact), "--data", str(table))
    assert code == 2 and "is text-classification data but" in err and "does image-classification" in err


def test_eval_reads_a_csv_of_paths(capsys, vit_artifact, tmp_path):
    data = _image_folder(tmp_path / "data")
    table = tmp_path / "images.csv"
    rows = [f"{path.relative_to(tmp_path)},{path.parent.name}" for path in sorted(data.rglob("*.*"))]
    table.write_text("path,label\n" + "\n".join(rows) + "\n")
    code, out, err = run_cli(capsys, "eval", str(vit_artifact), "--data", str(table))
    assert code == 0, err
    assert "(5 examples)" in out


def test_bench_on_an_image_artifact(capsys, vit_artifact):
    report_file = vit_artifact.parent / "bench.json"
    code, out, err = run_cli(
        capsys, "bench", str(vit_artifact), "--batch", "1,2", "--runs", "3", "--no-save", "--json", str(report_file)
    )
    assert code == 0, err
    report = json.loads(report_file.read_text())
    assert [(point["batch"], point["seq"]) for point in report["points"]] == [(1, None), (2, None)]  # one size
    assert out.splitlines()[1].split()[:2] == ["1", "-"]  # no sequence column value for an image model
    assert report["preprocess"]["runs"] >= 3 and report["preprocess"]["p50_ms"] > 0  # decode + preprocess, apart
    assert "decode + preprocess" in out
    code, _, err = run_cli(capsys, "bench", str(vit_artifact), "--seq", "32", "--no-save")
    assert_one_line_error(code, err, "is an image model", "--seq does not apply", "drop --seq")


def test_static_int8_calibrates_on_an_unlabelled_folder(folders, tmp_path):
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for path in photos()[:10]:
        shutil.copy(path, calibration / path.name)
    recipe = Recipe.from_flags(
        backend="onnxruntime", quantize="static", calibration=str(calibration), calibration_samples=12
    )
    result = compile(folders["resnet"], "host", tmp_path / "int8", recipe)
    assert result.manifest.precision.value == "int8"
    assert f"calibration data {calibration} has 10 examples: all used (--calibration-samples 12)" in result.notes
    bench = json.loads((result.path / "reports" / "quantize.json").read_text())["bench"]
    assert "sequence" not in bench and bench["batch"] == 1  # an image model has no sequence length
    predictions = load(result.path).predict([photo("chelsea.png")])
    assert predictions[0].label in LABELS


def test_a_torch_module_with_a_declared_preprocessing(tmp_path):
    """An NHWC module (the layout a TensorFlow port takes), its spec and labels from the recipe."""
    import torch
    from torch import nn

    from edgekiln.runtime.images.spec import ImagePreprocessSpec

    class NhwcNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, stride=2)
            self.head = nn.Linear(4, 3)

        def forward(self, x):
            return self.head(self.conv(x.permute(0, 3, 1, 2)).relu().mean(dim=(2, 3)))

    torch.manual_seed(0)
    module = NhwcNet().eval()
    spec = ImagePreprocessSpec(
        input="images",
        resize="shortest-edge",
        size=(40,),
        interpolation="bicubic",
        crop=(32, 32),
        rescale=1.0,
        mean=(127.0, 127.0, 127.0),
        std=(128.0, 128.0, 128.0),
        layout="NHWC",
    )
    recipe = Recipe.from_flags(backend="onnxruntime", image=spec, labels=("a", "b", "c"))
    result = compile(module, "host", tmp_path / "art", recipe)
    assert result.manifest.image == spec and result.manifest.labels == ("a", "b", "c")
    assert Recipe.from_file(result.path / "recipe.toml").source.image == spec
    session = load(result.path)
    feeds, _ = session.encoder.encode(photos())
    assert feeds["images"].shape == (len(photos()), 32, 32, 3)
    with torch.inference_mode():
        expected = module(torch.from_numpy(feeds["images"])).numpy()
    predictions = session.predict(photos(), top=1)
    assert [p.label for p in predictions] == [("a", "b", "c")[i] for i in expected.argmax(-1)]


def test_declared_preprocessing_needs_a_torch_module(folders, tmp_path):
    from edgekiln.compiler.errors import CompileError
    from edgekiln.runtime.images.spec import ImagePreprocessSpec

    spec = ImagePreprocessSpec(input="pixel_values", size=(32, 32))
    with pytest.raises(CompileError, match="apply to a torch.nn.Module"):
        compile(folders["vit"], "host", tmp_path / "art", Recipe.from_flags(image=spec))


def test_serve_predict_takes_base64_images_and_never_reads_a_path(vit_artifact, tmp_path):
    """An image model's /predict body carries the image files themselves (base64); a string a client
    sends is never opened as a file on the server."""
    import base64

    pytest.importorskip("uvicorn")
    from edgekiln.runtime.serve.app import Server
    from edgekiln.runtime.serve.config import ServeConfig
    from edgekiln.runtime.serve.models import ServedModel

    from .serve_helpers import request, serving

    session = load(vit_artifact)
    pictures = photos()[:3]
    encoded = [base64.b64encode(path.read_bytes()).decode() for path in pictures]
    secret = tmp_path / "secret.png"
    shutil.copyfile(pictures[0], secret)
    with serving(Server([ServedModel("vit", session)], ServeConfig(max_wait_ms=5))) as running:

        def post(body):
            return request(running.port, "POST", "/v2/models/vit/predict", body)[::2]

        status, body = post({"images": encoded})
        assert status == 200, body
        expected = session.predict(pictures)
        assert [p["label"] for p in body["predictions"]] == [p.label for p in expected]
        np.testing.assert_allclose([p["score"] for p in body["predictions"]], [p.score for p in expected], rtol=1e-5)
        status, body = post({"texts": [str(secret)]})
        assert status == 400 and "base64" in body["error"] and "not read as file paths" in body["error"]
        status, body = post({"images": [str(secret)]})  # a path is not base64 ('/' and '.' aside, no padding)
        assert status == 400 and "images[0]" in body["error"]
        status, body = post({"images": [base64.b64encode(b"not an image").decode()]})
        assert status == 400 and "\n" not in body["error"]
        status, body = post({"images": [encoded[0], 7]})
        assert status == 400 and "images[1]" in body["error"]
        status, body = post({"images": [encoded[0], base64.b64encode(b"not an image").decode()]})
        assert status == 400 and body["error"].startswith("images[1]: ")  # which one, by its place
        status, body = post({"images": encoded[:1], "top": 2})
        assert status == 200 and len(body["predictions"][0]["scores"]) == 2
        for top in (0, "2", True):
            status, body = post({"images": encoded[:1], "top": top})
            assert status == 400 and "`top` must be a positive integer" in body["error"]
        status, body = post({"images": encoded[:1], "topk": 2})
        assert status == 400 and "keys ['topk'] this model does not take" in body["error"]


def test_pooling_is_refused_where_it_would_be_ignored(folders, tmp_path):
    from edgekiln.compiler.errors import CompileError

    with pytest.raises(
        CompileError, match="--pooling applies to sentence-embedding models; vit is image-classification"
    ):
        compile(folders["vit"], "host", tmp_path / "art", Recipe.from_flags(pooling="mean"))
    assert not (tmp_path / "art").exists()


def test_predict_runs_long_lists_in_batches_and_takes_every_documented_input(vit_artifact):
    """Many images run `batch_size` at a time (memory bounded), with the answers of one call; a
    memoryview, numpy integers for `top`, an empty batch and a closed image are handled in one line."""
    import io

    from PIL import Image

    from edgekiln.runtime.errors import InputError

    session = load(vit_artifact)
    paths = [photo(name) for name in ("chelsea.png", "rocket.jpg", "coffee.png", "astronaut.png", "camera.png")]
    whole = session.predict(paths, top=3)
    chunked = session.predict(paths, top=3, batch_size=2)
    assert [p.label for p in chunked] == [p.label for p in whole]
    for one, other in zip(chunked, whole):
        assert list(one.scores) == list(other.scores)
        np.testing.assert_allclose(list(one.scores.values()), list(other.scores.values()), rtol=1e-5, atol=1e-6)
    data = photo("rocket.jpg").read_bytes()
    assert session.predict(memoryview(data), top=np.int64(2))[0].label == whole[1].label
    with pytest.raises(InputError, match="no images given"):
        session.predict(np.zeros((0, 32, 32, 3), np.uint8))
    with pytest.raises(InputError, match="batch_size must be a positive integer"):
        session.predict(paths, batch_size=0)
    with Image.open(io.BytesIO(data)) as image:
        pass
    with pytest.raises(InputError, match="was closed before its pixels were loaded"):
        session.predict([image])


def test_a_model_that_does_not_take_rgb_images_is_one_error(folders, tmp_path):
    """A 1-channel Hugging Face folder, and a module whose declared layout is not the one it takes."""
    import torch
    from torch import nn

    from edgekiln.compiler.errors import CompileError
    from edgekiln.runtime.images.spec import ImagePreprocessSpec

    grey = tmp_path / "grey"
    shutil.copytree(folders["vit"], grey)
    config = json.loads((grey / "config.json").read_text())
    (grey / "config.json").write_text(json.dumps({**config, "num_channels": 1}))
    with pytest.raises(CompileError, match="grey takes 1-channel images .* gives 3 \\(RGB\\)"):
        compile(grey, "host", tmp_path / "art", Recipe.from_flags(backend="onnxruntime"))
    spec = ImagePreprocessSpec(
        input="images", resize="exact", size=(32, 32), mean=(0.5,) * 3, std=(0.5,) * 3, layout="NHWC"
    )
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())  # takes NCHW
    torch.manual_seed(0)
    with pytest.raises(CompileError, match=r"Sequential failed on the images .* \(float32 \[2, 32, 32, 3\], NHWC"):
        compile(module, "host", tmp_path / "mod", Recipe.from_flags(backend="onnxruntime", image=spec))
    assert not (tmp_path / "art").exists() and not (tmp_path / "mod").exists()


def test_image_bytes_piped_to_run_are_told_that_stdin_takes_paths(capsys, monkeypatch, vit_artifact):
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(photo("rocket.jpg").read_bytes())))
    code, _, err = run_cli(capsys, "run", str(vit_artifact), "-")
    assert_one_line_error(code, err, "stdin line 1 is not valid UTF-8", "stdin takes image paths, one per line")


def test_verify_checks_the_image_preprocessing_where_it_runs(capsys, vit_artifact, tmp_path, monkeypatch):
    """A stored test image is decoded and preprocessed here and compared with the build's tensor: a
    device whose resize differs (another Pillow) fails verify, though the model cases pass."""
    from edgekiln.runtime.images import preprocess

    assert "reference_image.npz" in load(vit_artifact).manifest.files
    code, out, _ = run_cli(capsys, "verify", str(vit_artifact))
    assert code == 0 and "image preprocessing" in out and "max abs diff 0.00e+00 -> PASS" in out
    resize = preprocess.resize
    monkeypatch.setattr(preprocess, "resize", lambda image, spec: resize(image.transpose(0), spec))  # mirrored
    code, _, err = run_cli(capsys, "verify", str(vit_artifact))
    assert_one_line_error(code, err, "this machine's image preprocessing differs from the build machine's")
