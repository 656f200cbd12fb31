"""Differential tests: compiled tiny BERTs against PyTorch, through the runtime's own tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers

from edgekiln.compiler import Recipe, compile
from edgekiln.runtime import Task, load
from edgekiln.runtime.reports.schema import read_reports

TEXTS = ["i love this movie", "the plot was boring and the acting was bad!", "paris", "john visited london"]
ATOL = 1e-4  # fp32 export of the same graph: differences are rounding only


def _reference(folder, kind: str, texts):
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    model_class = {
        "sequence": transformers.AutoModelForSequenceClassification,
        "token": transformers.AutoModelForTokenClassification,
        "encoder": transformers.AutoModel,
    }[kind]
    model = model_class.from_pretrained(str(folder)).eval()
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        out = model(**batch)
    if kind != "encoder":
        return out.logits.numpy(), batch
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=1).numpy(), batch


def test_text_classifier_matches_pytorch(bert_folders, artifacts):
    session = load(artifacts["sequence"])
    assert session.task is Task.TEXT_CLASSIFICATION
    assert session.manifest.labels == ("negative", "positive")
    logits, _ = _reference(bert_folders["sequence"], "sequence", TEXTS)
    raw = session.run(session.encoder.encode(TEXTS)[0])["logits"]
    np.testing.assert_allclose(raw, logits, atol=ATOL, err_msg="logits differ from PyTorch")
    predictions = session.predict(TEXTS)
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for prediction, probs in zip(predictions, expected):
        assert prediction.label == ("negative", "positive")[int(probs.argmax())]
        assert prediction.score == pytest.approx(float(probs.max()), abs=1e-4)
        assert sum(prediction.scores.values()) == pytest.approx(1.0)


def test_token_classifier_tags_each_word(bert_folders, artifacts):
    session = load(artifacts["token"])
    logits, batch = _reference(bert_folders["token"], "token", TEXTS)
    tagged = session.predict(TEXTS)
    labels = session.manifest.labels
    for row, (text, words) in enumerate(zip(TEXTS, tagged)):
        assert [w.word for w in words] == text.replace("!", " !").split()
        word_ids = batch.word_ids(row)
        firsts = [word_ids.index(i) for i in range(len(words))]
        assert [w.tag for w in words] == [labels[int(logits[row, p].argmax())] for p in firsts]
        assert all(text[w.start : w.end] == w.word for w in words)


def test_sentence_embeddings_match_pytorch_pooling(bert_folders, artifacts):
    session = load(artifacts["encoder"])
    assert session.task is Task.SENTENCE_EMBEDDING
    embeddings = session.predict(TEXTS)
    reference, _ = _reference(bert_folders["encoder"], "encoder", TEXTS)
    assert embeddings.shape == (len(TEXTS), 32) and embeddings.dtype == np.float32
    np.testing.assert_allclose(embeddings, reference, atol=ATOL, err_msg="pooled embeddings differ")
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)


def test_runtime_tokenizer_matches_transformers(bert_folders, artifacts):
    session = load(artifacts["sequence"])
    feeds, _ = session.encoder.encode(TEXTS)
    _, batch = _reference(bert_folders["sequence"], "sequence", TEXTS)
    for name in ("input_ids", "attention_mask", "token_type_ids"):
        np.testing.assert_array_equal(feeds[name], batch[name].numpy(), err_msg=name)
    unknown = (feeds["input_ids"] == 1).sum() / feeds["attention_mask"].sum()
    assert unknown < 0.1, f"{unknown:.0%} of tokens are [UNK]: the test tokenizer lost its vocabulary"


def test_dynamic_batch_and_sequence_axes(artifacts):
    session = load(artifacts["sequence"])
    spec = {t.name: list(t.shape) for t in session.manifest.inputs}
    assert spec["input_ids"] == ["batch", "sequence"]
    for batch, seq in ((1, 3), (5, 40), (2, 64)):
        ids = np.full((batch, seq), 10, dtype=np.int64)
        out = session.run({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": ids * 0})
        assert out["logits"].shape == (batch, 2)


def test_manifest_records_the_contract(artifacts):
    manifest = json.loads((artifacts["sequence"] / "manifest.json").read_text())
    for key in (
        "schema_version",
        "artifact_id",
        "backend",
        "target",
        "precision",
        "inputs",
        "outputs",
        "task",
        "labels",
        "passes",
        "tool_versions",
        "files",
    ):
        assert key in manifest, key
    assert [p["name"] for p in manifest["passes"]] == ["export_onnx", "ort_optimize", "verify_fidelity"]
    for record in manifest["passes"]:
        assert len(record["input_sha256"]) == 64 and len(record["output_sha256"]) == 64
        assert record["seconds"] >= 0
    assert set(manifest["files"]) == {"model.onnx", "tokenizer.json", "reference.npz", "recipe.toml"}
    fidelity = read_reports(artifacts["sequence"]).fidelity["verify_fidelity"]  # a classifier: judged by top-1
    assert fidelity.passed and fidelity.output_kind == "classifier" and fidelity.argmax_agreement == 1.0
    assert fidelity.max_relative_error <= fidelity.thresholds["max_relative_error"]
    assert len(fidelity.shapes) >= 3
    encoder = read_reports(artifacts["encoder"]).fidelity["verify_fidelity"]  # embeddings: by abs diff and cosine
    assert encoder.output_kind == "dense" and encoder.max_abs_diff <= encoder.thresholds["max_abs_diff"]
    html = (artifacts["sequence"] / "reports" / "report.html").read_text()
    assert "Fidelity against the reference" in html and manifest["artifact_id"] in html


def test_recompile_hits_the_cache_and_gives_the_same_artifact(bert_folders, artifacts, tmp_path):
    first = json.loads((artifacts["sequence"] / "manifest.json").read_text())
    again = compile(bert_folders["sequence"], "x86-64-avx2", tmp_path / "again")
    assert all(record.cached for record in again.manifest.passes)
    assert again.manifest.artifact_id == first["artifact_id"]


def test_stored_recipe_rebuilds_the_same_artifact(bert_folders, artifacts, tmp_path):
    stored = Recipe.from_file(artifacts["sequence"] / "recipe.toml")
    assert stored == Recipe.from_flags(backend="onnxruntime")  # the defaults, with the backend the target chose
    again = compile(bert_folders["sequence"], "x86-64-avx2", tmp_path / "rebuilt", stored)
    assert (
        again.manifest.artifact_id == json.loads((artifacts["sequence"] / "manifest.json").read_text())["artifact_id"]
    )
    assert again.manifest.files == load(artifacts["sequence"]).manifest.files


def test_changed_weights_miss_the_cache(bert_folders, tmp_path):
    import shutil

    folder = tmp_path / "changed"
    shutil.copytree(bert_folders["sequence"], folder)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder))
    with torch.no_grad():
        model.classifier.bias += 1.0
    model.save_pretrained(folder)
    result = compile(folder, "x86-64-avx2", tmp_path / "out")
    assert not result.manifest.passes[0].cached


def test_torchscript_exporter_also_works(bert_folders, tmp_path):
    result = compile(
        bert_folders["token"],
        "arm64-cortex-a72",
        tmp_path / "ts",
        recipe=Recipe.from_flags(exporter="torchscript", cache=False),
    )
    export = json.loads((result.path / "reports" / "export_onnx.json").read_text())
    assert export["exporter"] == "torchscript"
    assert result.manifest.target.arch == "aarch64"
    assert load(result.path).predict(["john went to paris"])[0][0].word == "john"
