"""int8 quantization: both modes on a tiny fine-tuned model, the budget's fallback loop, diagnostics,
and one clear error per bad input."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekiln.cli.main import main
from edgekiln.compiler import CompileError, Recipe, compile
from edgekiln.compiler.data import DataError, DataTask
from edgekiln.compiler.finetune import FinetuneConfig, finetune
from edgekiln.compiler.quantization.evaluation import Evaluator, Score
from edgekiln.compiler.quantization.sensitivity import sqnr_db
from edgekiln.runtime import Precision, load
from edgekiln.runtime.reports.schema import read_reports

from .conftest import make_bert_folder
from .test_finetune_eval import _sentiment

TEXTS = ["i love this movie", "the plot was boring", "great acting", "terrible film", "it was fun", "bad"]
MIN_LOGIT_SQNR_DB = 15.0


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("quant")
    train, dev = _sentiment(root / "train.tsv", 240, 0), _sentiment(root / "dev.tsv", 60, 1)
    config = FinetuneConfig(task=DataTask.TEXT_CLASSIFICATION, epochs=4, learning_rate=2e-3, batch_size=16)
    folder = finetune(
        make_bert_folder(root / "base", "encoder", seed=1),
        root / "ckpt",
        train_data=str(train),
        eval_data=str(dev),
        config=config,
        log=lambda message: None,
    ).path
    return {"root": root, "model": folder, "train": train, "dev": dev}


@pytest.fixture(scope="module")
def float_artifact(classifier) -> Path:
    return compile(classifier["model"], "x86-64-avx2", classifier["root"] / "float").path


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_int8_logits_stay_close_to_float(classifier, float_artifact, mode, tmp_path):
    result = compile(
        classifier["model"],
        "x86-64-avx2",
        tmp_path / mode,
        recipe=Recipe.from_flags(quantize=mode, calibration=str(classifier["train"])),
    )
    report = json.loads((result.path / "reports" / "quantize.json").read_text())
    assert report["chosen"] == mode and result.manifest.precision is Precision.INT8
    assert result.manifest.quantization.mode == mode
    assert report["speedup"] > 0 and report["float_ms"] > 0
    assert report["bench"]["sequence"] == 64  # the target's longest bucket (128), cut to the model's 64 positions
    assert report["layers"] and all(row["sqnr_db"] is not None for row in report["layers"])
    weighted = [row for row in report["layers"] if row["weight_min"] is not None]
    assert weighted and all(row["int8"] for row in weighted), "a MatMul with weights was left in float"
    reference, quantized = load(float_artifact), load(result.path)
    feeds, _ = reference.encoder.encode(TEXTS)
    sqnr = sqnr_db([reference.run(feeds)["logits"]], [quantized.run(feeds)["logits"]])
    assert sqnr >= MIN_LOGIT_SQNR_DB, f"{mode} int8 logits SQNR {sqnr:.1f} dB < {MIN_LOGIT_SQNR_DB} dB"
    html = (result.path / "reports" / "report.html").read_text()
    assert "<h2>Quantization</h2>" in html and "data:image/png;base64," in html
    assert (result.path / "reports" / "quantize_sqnr.png").stat().st_size > 1000


def _fake_scores(monkeypatch, drop_for_excluded):
    """Replace the eval-data score by one that depends on how many layers were kept in float."""

    def score(self, path: Path) -> Score:
        excluded = int(path.stem.rsplit("-", 1)[1]) if "-" in path.stem else None
        value = 0.9 if excluded is None else 0.9 - drop_for_excluded(excluded) / 100
        return Score(self.metric, value, [])

    monkeypatch.setattr(Evaluator, "score", score)
    monkeypatch.setattr(Evaluator, "agreement", staticmethod(lambda a, b: 1.0))


def test_budget_returns_the_least_accurate_layers_to_float(classifier, monkeypatch, tmp_path):
    _fake_scores(monkeypatch, lambda excluded: max(0.0, 5.0 - excluded))
    result = compile(
        classifier["model"],
        "x86-64-avx2",
        tmp_path / "budget",
        recipe=Recipe.from_flags(
            quantize="static",
            calibration=str(classifier["train"]),
            eval_data=str(classifier["dev"]),
            accuracy_budget=1.0,
            cache=False,
        ),
    )
    report = json.loads((result.path / "reports" / "quantize.json").read_text())
    steps = report["attempts"][0]["steps"]
    assert [s["excluded"] for s in steps] == [0, 1, 2, 4]
    assert [s["accuracy_drop"] for s in steps] == [5.0, 4.0, 3.0, 1.0]
    assert report["accuracy_drop"] == 1.0
    kept = set(result.manifest.quantization.kept_float)
    assert len(kept) == 4 and kept == {row["node"] for row in report["layers"] if row["kept_float"]}
    assert not any(row["int8"] for row in report["layers"] if row["kept_float"])


def test_openvino_budget_on_a_transformer_uses_nncf_accuracy_control(classifier, tmp_path):
    """A CNN's OpenVINO int8 takes the QDQ route (test_openvino_cnn_int8.py); any other model NNCF's,
    under a budget its accuracy control (measured drop on the eval data, nothing faked)."""
    pytest.importorskip("nncf")
    result = compile(
        classifier["model"],
        "x86-64-avx512-vnni",
        tmp_path / "ov",
        recipe=Recipe.from_flags(
            backend="openvino",
            quantize="static",
            calibration=str(classifier["train"]),
            eval_data=str(classifier["dev"]),
            accuracy_budget=100.0,
            cache=False,
        ),
    )
    report = json.loads((result.path / "reports" / "quantize_openvino.json").read_text())
    assert report["method"] == "nncf" and report["chosen"] == "nncf-int8"
    assert report["metric"] == "accuracy" and report["float_metric"] is not None
    assert report["accuracy_drop"] <= 100 and report["attempts"][0]["steps"] == []


def test_eval_data_labelled_otherwise_fails_before_any_calibration(classifier, monkeypatch, tmp_path):
    """Labels the model does not have were found only when the first candidate was scored, after the
    calibration and quantization had run (minutes on a real model)."""
    from edgekiln.compiler.passes import quantize as quantize_pass

    def never(*args, **kwargs):
        raise AssertionError("quantized before the eval labels were checked")

    monkeypatch.setattr(quantize_pass, "quantize_model", never)
    other = tmp_path / "other.tsv"
    other.write_text("sentence\tlabel\ngood film\tyes\nbad film\tno\n")
    with pytest.raises(CompileError, match=r"labels \['no', 'yes'\] in .* are not among"):
        compile(
            classifier["model"],
            "x86-64-avx2",
            tmp_path / "out",
            recipe=Recipe.from_flags(
                quantize="static",
                calibration=str(classifier["train"]),
                eval_data=str(other),
                accuracy_budget=1.0,
                cache=False,
            ),
        )


def test_budget_that_cannot_be_met_writes_no_artifact(classifier, monkeypatch, tmp_path):
    _fake_scores(monkeypatch, lambda excluded: 5.0)
    with pytest.raises(CompileError, match="no int8 model stays within the accuracy budget of 0.5 points"):
        compile(
            classifier["model"],
            "x86-64-avx2",
            tmp_path / "out",
            recipe=Recipe.from_flags(
                quantize="dynamic", eval_data=str(classifier["dev"]), accuracy_budget=0.5, cache=False
            ),
        )
    assert not (tmp_path / "out").exists()
    kept = json.loads((tmp_path / "out.quantization-failed.json").read_text())
    assert kept["attempts"][0]["steps"][-1]["excluded"] > 0


def test_auto_keeps_float_when_int8_is_not_faster(classifier, monkeypatch, tmp_path):
    from edgekiln.compiler.passes import quantize as quantize_pass

    monkeypatch.setattr(quantize_pass, "latency_ms", lambda paths, feeds, threads: [1.0] + [2.0] * (len(paths) - 1))
    result = compile(
        classifier["model"],
        "x86-64-avx2",
        tmp_path / "auto",
        recipe=Recipe.from_flags(quantize="auto", calibration=str(classifier["train"]), cache=False),
    )
    report = json.loads((result.path / "reports" / "quantize.json").read_text())
    assert [a["mode"] for a in report["attempts"]] == ["dynamic", "static"]
    assert report["chosen"] == "float" and report["int8_slower_than_float"]
    assert result.manifest.precision is Precision.FP32


def test_quantization_bad_inputs(classifier, tmp_path):
    model, train = classifier["model"], str(classifier["train"])
    with pytest.raises(CompileError, match="--quantize static needs calibration data"):
        compile(model, "x86-64-avx2", tmp_path / "a", recipe=Recipe.from_flags(quantize="static"))
    with pytest.raises(CompileError, match="needs labelled data"):
        compile(model, "x86-64-avx2", tmp_path / "b", recipe=Recipe.from_flags(quantize="dynamic", accuracy_budget=0.5))
    few = tmp_path / "few.txt"
    few.write_text("one\ntwo\nthree\n")
    with pytest.raises(DataError, match="has 3 examples; at least 8"):
        compile(model, "x86-64-avx2", tmp_path / "c", recipe=Recipe.from_flags(quantize="static", calibration=str(few)))
    with pytest.raises(DataError, match="too few"):
        compile(
            model,
            "x86-64-avx2",
            tmp_path / "d",
            recipe=Recipe.from_flags(quantize="static", calibration=train, calibration_samples=2),
        )
    blank = tmp_path / "blank.txt"
    blank.write_text("\u200b\n" * 20)
    with pytest.raises(DataError, match="tokenizes to nothing"):
        compile(
            model, "x86-64-avx2", tmp_path / "e", recipe=Recipe.from_flags(quantize="static", calibration=str(blank))
        )
    with pytest.raises(CompileError, match="invalid `quantize.mode` 'int4'"):
        compile(model, "x86-64-avx2", tmp_path / "f", recipe=Recipe.from_flags(quantize="int4"))
    assert not any(path.is_dir() for path in tmp_path.iterdir())


class Elementwise(torch.nn.Module):
    def forward(self, x):
        return torch.relu(x * 2 + 1)


def test_model_without_quantizable_layers(tmp_path):
    with pytest.raises(CompileError, match="has no quantizable layers"):
        compile(
            Elementwise(),
            "x86-64-avx2",
            tmp_path / "x",
            example_inputs=torch.randn(2, 4),
            recipe=Recipe.from_flags(quantize="dynamic"),
        )


def test_cli_quantize_and_inspect(classifier, tmp_path, capsys):
    out = tmp_path / "q"
    assert (
        main(
            [
                "compile",
                str(classifier["model"]),
                "--target",
                "arm64-cortex-a76",
                "-o",
                str(out),
                "--quantize",
                "dynamic",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "quantization (onnxruntime): kept dynamic" in printed
    assert "fidelity: int8 (dynamic) vs the float model: top-1 agreement" in printed  # what was built, not float
    settings = json.loads((out / "manifest.json").read_text())["passes"][-1]["config"]
    assert settings["activation_type"] == "int8" and settings["reduce_range"] is False  # S8S8 on ARM
    assert main(["inspect", str(out), "--quantization"]) == 0
    assert "SQNR dB" in capsys.readouterr().out
    assert main(["compile", str(classifier["model"]), "-o", str(tmp_path / "s"), "--quantize", "static"]) == 2
    assert "needs calibration data" in capsys.readouterr().err
    assert np.isfinite(load(out).predict(["great film"])[0].score)


def test_openvino_int8_through_nncf(classifier, float_artifact, tmp_path):
    pytest.importorskip("nncf", reason="NNCF is not installed (pip install 'edgekiln[openvino]')")
    result = compile(
        classifier["model"],
        "x86-64-avx2",
        tmp_path / "ov-int8",
        recipe=Recipe.from_flags(
            backend="openvino",
            quantize="static",
            calibration=str(classifier["train"]),
            eval_data=str(classifier["dev"]),
            accuracy_budget=5.0,
        ),
    )
    manifest = result.manifest
    assert manifest.backend == "openvino" and manifest.precision is Precision.INT8
    assert [p.name for p in manifest.passes][-2:] == ["lower_openvino", "quantize_openvino"]
    report = read_reports(result.path).quantization  # the same typed report as ONNX Runtime's quantizer
    assert report.backend == "openvino" and report.method == "nncf"
    assert report.chosen == "nncf-int8" and report.accuracy_drop <= 5.0 and report.speedup > 0
    assert report.fidelity is not None and report.fidelity.candidate == "int8 (NNCF)"
    assert report.layers and report.excluded_nodes == tuple(r.node for r in report.layers if r.kept_float)
    reference, quantized = load(float_artifact), load(result.path)
    feeds, _ = reference.encoder.encode(TEXTS)
    sqnr = sqnr_db([reference.run(feeds)["logits"]], [quantized.run(feeds)["logits"]])
    assert sqnr >= MIN_LOGIT_SQNR_DB, f"NNCF int8 logits SQNR {sqnr:.1f} dB < {MIN_LOGIT_SQNR_DB} dB"
    assert "openvino (nncf): requested" in (result.path / "reports" / "report.html").read_text()
    from edgekiln.runtime.verify import verify_artifact

    checked = verify_artifact(result.path)  # the reference is the int8 IR's own outputs, not the float model's
    assert checked["passed"] and checked["min_cosine"] > 0.9999, checked


def test_backend_auto_measures_the_candidates_and_keeps_the_fastest_within_budget(classifier, tmp_path, capsys):
    out = tmp_path / "auto"
    code = main(
        [
            "compile",
            str(classifier["model"]),
            "--target",
            "x86-64-avx2",
            "--backend",
            "auto",
            "--accuracy-budget",
            "5",
            "--eval-data",
            str(classifier["dev"]),
            "--calibration",
            str(classifier["train"]),
            "--auto-keep-candidates",
            "-o",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    report = json.loads((out / "reports" / "selection.json").read_text())
    names = {row["name"] for row in report["candidates"]}
    kept = tmp_path / "auto.candidates"  # --auto-keep-candidates: every built candidate, loadable
    assert {folder.name for folder in kept.iterdir()} == {
        row["name"] for row in report["candidates"] if not row["error"]
    }
    assert load(kept / "onnxruntime-int8-dynamic").manifest.quantization is not None
    assert {
        "onnxruntime-fp32",
        "onnxruntime-int8-dynamic",
        "onnxruntime-int8-static",
        "openvino-fp32",
        "openvino-int8-static",
        "openvino-fp32-buckets",  # the text model's OpenVINO candidates again with static shapes
        "openvino-int8-static-buckets",
    } <= names
    twin = next(row for row in report["candidates"] if row["name"] == "openvino-fp32-buckets")
    assert twin["recipe"]["backend"]["options"]["sequence_buckets"] == [32, 64]  # the profile's, up to 64 tokens
    assert not any(
        row["name"].startswith("onnxruntime") and row["name"].endswith("-buckets") for row in report["candidates"]
    )
    built = [row for row in report["candidates"] if row["error"] is None]
    fitting = [row for row in built if row["accuracy_drop"] <= 5]
    winner = next(row for row in built if row["name"] == report["winner"])
    assert winner["p50_ms"] == min(row["p50_ms"] for row in fitting)
    assert Recipe.from_file(out / "recipe.toml") == Recipe.model_validate(winner["recipe"])  # rebuildable as is
    assert report["winner"] in report["pareto"]
    assert "Build selection" in (out / "reports" / "report.html").read_text()
    assert (out / "reports" / "selection_pareto.png").is_file()
    assert report["goal"]["timing"] == "data" and "per eval example" in report["reason"]
    assert report["timed_on"] == platform.machine() and "timed on this" not in report["reason"]  # a local target

    from edgekiln.compiler.selection import Candidate, SelectionConfig, Timing, _time

    pair = [Candidate(name, Recipe(), path=kept / name) for name in ("onnxruntime-fp32", "openvino-fp32")]
    _time(pair, SelectionConfig(accuracy_budget=1, timing=Timing.SHAPE, sequence=16, rounds=1), None)
    assert all(c.p50_ms > 0 and c.p99_ms >= c.p50_ms for c in pair), "the model alone at one synthetic shape"


def test_timing_items_are_what_predict_takes_one_example_each():
    from edgekiln.compiler.data import Dataset, DataTask, ImageExample, TextExample, TokenExample
    from edgekiln.compiler.selection import timing_items

    texts = Dataset(DataTask.TEXT_CLASSIFICATION, (TextExample("a fine film", "1"), TextExample("dull", "0")), "t")
    words = Dataset(DataTask.TOKEN_CLASSIFICATION, (TokenExample(("Paris", "is", "big"), ("B-LOC", "O", "O")),), "w")
    images = Dataset(DataTask.IMAGE_CLASSIFICATION, (ImageExample("/data/cat.png", "cat"),), "i")
    assert timing_items(texts, 1) == ["a fine film"]
    assert timing_items(texts, 10) == ["a fine film", "dull"]
    assert timing_items(words, 10) == ["Paris is big"]
    assert timing_items(images, 10) == ["/data/cat.png"]


def test_selection_rules_without_timing():
    from edgekiln.compiler.selection import Candidate, SelectionConfig, choose, pareto

    def candidate(name, metric, p50):
        return Candidate(name, Recipe(), metric=metric, drop=round(90 - metric, 3), p50_ms=p50)

    pool = [
        candidate("fp32", 90, 10.0),
        candidate("int8", 89.5, 4.0),
        candidate("pruned-int8", 87, 2.0),
        candidate("slow-worse", 88, 12.0),
    ]
    assert choose(pool, SelectionConfig(accuracy_budget=1.0))[0].name == "int8"
    assert choose(pool, SelectionConfig(accuracy_budget=5.0))[0].name == "pruned-int8"
    assert choose(pool, SelectionConfig(latency_budget_ms=5.0))[0].name == "int8"
    assert pareto(pool) == ["fp32", "int8", "pruned-int8"]
    with pytest.raises(CompileError, match="no candidate runs under 1.0 ms"):
        choose(pool, SelectionConfig(latency_budget_ms=1.0))
    with pytest.raises(CompileError, match="chooses by one goal, and both were given"):
        SelectionConfig(accuracy_budget=1.0, latency_budget_ms=3.0)
    with pytest.raises(CompileError, match="chooses by one goal, and neither was given"):
        SelectionConfig()


def test_in_memory_datasets_are_named_by_fingerprint_in_the_recipe(classifier, tmp_path):
    from edgekiln.compiler.data import load_dataset

    train = load_dataset(str(classifier["train"]))
    with pytest.raises(CompileError, match="needs calibration data"):
        Recipe.from_flags(quantize="static")  # no data at all: refused by the recipe itself
    result = compile(classifier["model"], "x86-64-avx2", tmp_path / "mem", Recipe(), datasets={"calibration": train})
    assert result.recipe.quantize.calibration == "memory:" + train.fingerprint()[:16]
    static = Recipe.from_flags(result.recipe, quantize="static")
    built = compile(classifier["model"], "x86-64-avx2", tmp_path / "int8", static, datasets={"calibration": train})
    assert built.manifest.precision is Precision.INT8
    with pytest.raises(CompileError, match="was an in-memory dataset of the Python API"):
        compile(classifier["model"], "x86-64-avx2", tmp_path / "again", Recipe.from_file(built.path / "recipe.toml"))
    with pytest.raises(CompileError, match=r"unknown dataset role\(s\) \['dev'\]"):
        compile(classifier["model"], "x86-64-avx2", tmp_path / "bad", Recipe(), datasets={"dev": train})


def test_auto_flags_become_the_selection_config(classifier, monkeypatch, tmp_path, capsys):
    import edgekiln.compiler.selection as selection

    seen = {}

    def fake_select(model, profile, output, base, config, **kwargs):
        seen.update(base=base, config=config)
        raise CompileError("stop here")

    monkeypatch.setattr(selection, "select_build", fake_select)
    flags = [
        "compile",
        str(classifier["model"]),
        "--backend",
        "auto",
        "--accuracy-budget",
        "1",
        "-o",
        str(tmp_path / "a"),
    ]
    data = ["--eval-data", str(classifier["dev"]), "--data", str(classifier["train"]), "--recover"]
    assert main([*flags, *data, "--auto-prune-flops", "0.4,0.6", "--sequence-buckets", "16,32"]) != 0
    assert seen["config"].prune_levels == (0.4, 0.6) and seen["config"].recover is not None
    assert seen["config"].static_sequences == (16, 32)
    assert seen["base"].prune is None and seen["base"].backend.options == {}  # levels and buckets are per candidate
    with pytest.raises(SystemExit):
        main([*flags, *data, "--auto-prune-flops", "0.4,1.5"])
    assert "expected fractions between 0 and 1" in capsys.readouterr().err


def test_the_selection_plot_numbers_candidates_and_joins_coinciding_labels(tmp_path):
    from edgekiln.compiler.diagnostics.plots import _label_groups, selection_plot

    rows = [
        {"name": "onnxruntime-fp32", "p50_ms": 10.0, "metric": 90.0, "error": None},
        {"name": "openvino-fp32", "p50_ms": 10.1, "metric": 90.0, "error": None},  # on top of the first
        {"name": "onnxruntime-int8-static", "p50_ms": 5.0, "metric": 89.0, "error": None},
        {"name": "tvm-fp32", "p50_ms": None, "metric": None, "error": "failed"},
    ]
    assert _label_groups(rows[:3]) == {(10.0, 90.0): ["1", "2"], (5.0, 89.0): ["3"]}
    report = {
        "candidates": rows,
        "pareto": ["onnxruntime-int8-static", "onnxruntime-fp32"],
        "winner": "onnxruntime-fp32",
    }
    path = selection_plot(report, tmp_path)
    assert path is not None and path.stat().st_size > 1000
