"""Fine-tuning (full, LoRA, token tags, resume) and evaluation on tiny models and tiny data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from edgekiln.cli.main import main
from edgekiln.compiler import compile
from edgekiln.compiler.data import DataError, DataTask, load_dataset
from edgekiln.compiler.errors import CompileError
from edgekiln.compiler.evaluate import evaluate
from edgekiln.compiler.finetune import FinetuneConfig, LoraSettings, finetune
from edgekiln.compiler.finetune.state import STATE_FILE, saved_position

from .conftest import make_bert_folder

pytestmark = pytest.mark.slow  # four fine-tuning runs of about a minute each
POSITIVE, NEGATIVE = ("good", "great", "love", "fun"), ("bad", "terrible", "hate", "boring")

FILLER = ("the", "movie", "film", "plot", "acting", "was", "very", "this", "it", "i")
PEOPLE, PLACES = ("john", "mary"), ("paris", "london")


def _sentiment(path: Path, count: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    rows = ["sentence\tlabel"]
    for i in range(count):
        words = list(rng.choice(FILLER, size=rng.integers(2, 6)))
        label = i % 2
        words.insert(int(rng.integers(0, len(words) + 1)), str(rng.choice(POSITIVE if label else NEGATIVE)))
        rows.append(f"{' '.join(words)}\t{label}")
    path.write_text("\n".join(rows) + "\n")
    return path


def _entities(path: Path, count: int, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    lines = []
    for _ in range(count):
        for word in rng.choice(FILLER + PEOPLE + PLACES, size=rng.integers(3, 7)):
            tag = "B-person" if word in PEOPLE else "B-location" if word in PLACES else "O"
            lines.append(f"{word}\t{tag}")
        lines.append("")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory) -> Path:
    return make_bert_folder(tmp_path_factory.mktemp("base") / "encoder", "encoder", seed=1)


@pytest.fixture(scope="module")
def sentiment_data(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("sentiment")
    return _sentiment(root / "train.tsv", 240, 0), _sentiment(root / "dev.tsv", 60, 1)


def _config(**overrides) -> FinetuneConfig:
    settings = dict(task=DataTask.TEXT_CLASSIFICATION, epochs=4, learning_rate=2e-3, batch_size=16, seed=0)
    return FinetuneConfig(**{**settings, **overrides})


@pytest.fixture(scope="module")
def tuned(encoder_folder, sentiment_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("tuned") / "classifier"
    return finetune(
        encoder_folder,
        out,
        train_data=str(sentiment_data[0]),
        eval_data=str(sentiment_data[1]),
        config=_config(),
        log=lambda message: None,
    )


def test_full_finetune_learns_and_writes_a_plain_checkpoint(tuned):
    report = tuned.report
    assert report["best_metric"] >= 0.85, f"dev accuracy {report['best_metric']:.3f} on a keyword task"
    assert [entry["epoch"] for entry in report["epochs"]] == [1, 2, 3, 4]
    assert json.loads((tuned.path / "train_report.json").read_text())["best_epoch"] == report["best_epoch"]
    config = json.loads((tuned.path / "config.json").read_text())
    assert config["id2label"] == {"0": "0", "1": "1"}
    assert not tuned.path.with_name(tuned.path.name + ".partial").exists()


def test_checkpoint_and_artifact_evaluate_identically(tuned, sentiment_data, tmp_path):
    artifact = compile(tuned.path, "x86-64-avx2", tmp_path / "artifact").path
    dev = load_dataset(sentiment_data[1])
    report = evaluate(artifact, dev, against=tuned.path)
    assert report["agreement"] == 1.0
    assert report["accuracy"] == pytest.approx(report["against"]["accuracy"])
    assert report["accuracy"] == pytest.approx(tuned.report["best_metric"])
    assert [row["label"] for row in report["per_class"]] == ["0", "1"]
    assert sum(row["support"] for row in report["per_class"]) == len(dev)
    for key in ("accuracy", "macro_f1", "micro_f1"):
        assert 0 <= report[key] <= 1


def test_lora_merges_adapters_into_a_plain_checkpoint(encoder_folder, sentiment_data, tmp_path):
    result = finetune(
        encoder_folder,
        tmp_path / "lora",
        train_data=str(sentiment_data[0]),
        eval_data=str(sentiment_data[1]),
        config=_config(lora=LoraSettings(rank=4), epochs=2),
        log=lambda message: None,
    )
    assert result.report["method"] == "lora"
    assert result.report["parameters"]["trainable"] < result.report["parameters"]["total"] / 5
    assert not (result.path / "adapter_config.json").exists()
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(result.path))
    assert not any("lora" in name for name in model.state_dict())
    dev = load_dataset(sentiment_data[1])
    assert evaluate(result.path, dev)["accuracy"] == pytest.approx(result.report["best_metric"])


def test_token_classification_reports_entity_f1(encoder_folder, tmp_path, capsys):
    train, dev = _entities(tmp_path / "train.conll", 150, 0), _entities(tmp_path / "dev.conll", 40, 1)
    result = finetune(
        encoder_folder,
        tmp_path / "ner",
        train_data=str(train),
        eval_data=str(dev),
        config=_config(task=DataTask.TOKEN_CLASSIFICATION),
        log=lambda message: None,
    )
    assert result.report["metric"] == "entity_f1" and result.report["best_metric"] >= 0.8
    out = tmp_path / "eval.json"
    assert main(["eval", str(result.path), "--data", str(dev), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["entity_f1"] == pytest.approx(result.report["best_metric"])
    assert {row["type"] for row in report["per_entity_type"]} == {"person", "location"}
    assert {row["label"] for row in report["per_class"]} >= {"O", "B-person", "B-location"}
    assert report["words_past_max_length"] == 0
    long = tmp_path / "long.conll"
    long.write_text("\n".join(f"{PLACES[0]}\tB-location" for _ in range(200)) + "\n")
    capsys.readouterr()
    assert main(["eval", str(result.path), "--data", str(long), "--json", str(out)]) == 0
    unseen = json.loads(out.read_text())["words_past_max_length"]
    assert (
        0 < unseen < 200 and f"note: {unseen} words fell past the model's longest sequence" in capsys.readouterr().out
    )
    longer = tmp_path / "longer.conll"  # a two-word person: training only ever showed one-word ones
    longer.write_text(f"{PEOPLE[0]}\tB-person\n{PEOPLE[1]}\tI-person\nvisited\tO\n")
    assert main(["eval", str(result.path), "--data", str(longer), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["tags_the_model_lacks"] == ["I-person"] and report["entity_recall"] < 1.0
    assert "note: the data's tags ['I-person'] are not among the model's labels" in capsys.readouterr().out
    other = tmp_path / "other.conll"  # a type the model does not know: data labelled otherwise, refused
    other.write_text(f"{PEOPLE[0]}\tB-PER\nvisited\tO\n")
    assert main(["eval", str(result.path), "--data", str(other)]) == 2
    assert "labels ['B-PER'] in" in capsys.readouterr().err


def test_lora_on_token_classification_trains_and_merges(encoder_folder, tmp_path):
    """peft's token-classification task type saves the head in full; LoRA targeting it too crashed."""
    train, dev = _entities(tmp_path / "train.conll", 60, 0), _entities(tmp_path / "dev.conll", 20, 1)
    result = finetune(
        encoder_folder,
        tmp_path / "ner-lora",
        train_data=str(train),
        eval_data=str(dev),
        config=_config(task=DataTask.TOKEN_CLASSIFICATION, lora=LoraSettings(rank=4), epochs=1),
        log=lambda message: None,
    )
    assert result.report["method"] == "lora"
    model = transformers.AutoModelForTokenClassification.from_pretrained(str(result.path))
    assert not any("lora" in name for name in model.state_dict())
    assert evaluate(result.path, load_dataset(str(dev)))["entity_f1"] == pytest.approx(result.report["best_metric"])


def test_interrupted_run_resumes_to_the_same_result(encoder_folder, sentiment_data, tuned, tmp_path):
    config = _config(save_every=5)
    out = tmp_path / "resumed"

    def interrupt(message: str) -> None:
        if message.startswith("epoch 2/"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(
            encoder_folder,
            out,
            train_data=str(sentiment_data[0]),
            eval_data=str(sentiment_data[1]),
            config=config,
            log=interrupt,
        )
    saved = tmp_path / "resumed.partial"
    assert (saved / STATE_FILE).is_file() and not out.exists()
    epoch, step = saved_position(saved).removeprefix("epoch ").split(", step ")  # what Ctrl-C's message names
    assert epoch == "2" and int(step) > 0 and int(step) % 5 == 0  # the last save: every 5 steps here
    assert not list(saved.glob("*.pt")) and len(list(saved.glob("*.safetensors"))) == 1  # no pickle, one state
    messages = []
    result = finetune(
        encoder_folder,
        out,
        train_data=str(sentiment_data[0]),
        eval_data=str(sentiment_data[1]),
        config=config,
        log=messages.append,
    )
    assert any(message.startswith("resuming from epoch 2") for message in messages)
    assert result.report["resumed"] and len(result.report["epochs"]) == 4
    resumed = transformers.AutoModelForSequenceClassification.from_pretrained(str(out)).state_dict()
    straight = transformers.AutoModelForSequenceClassification.from_pretrained(str(tuned.path)).state_dict()
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-4, atol=1e-5, msg=name)


def test_leftover_state_of_another_run_is_refused(encoder_folder, sentiment_data, tmp_path):
    from edgekiln.compiler.finetune.state import open_run

    partial = tmp_path / "out.partial"
    identity = {"model": "m", "config": {"epochs": 1, "seed": 0}, "train": ["abc", 10], "eval": ["def", 5]}
    assert open_run(partial, identity) is False
    (partial / STATE_FILE).write_text("{}")  # saved state: now there is a run to resume
    assert open_run(partial, identity) is True
    other = {**identity, "config": {"epochs": 2, "seed": 0}, "train": ["xyz", 10]}
    with pytest.raises(CompileError, match=r"other settings \(epochs\), training data") as error:
        open_run(partial, other)
    assert "--force" in error.value.hint and (partial / STATE_FILE).is_file()
    said = []
    assert open_run(partial, other, force=True, log=said.append) is False  # discarded, started afresh
    assert not (partial / STATE_FILE).exists() and "discarding the interrupted run" in said[0]
    (partial / "run.json").unlink()
    assert open_run(partial, identity) is False  # no state saved yet: nothing to resume, no refusal
    stranger = tmp_path / "mine.partial"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("keep")
    with pytest.raises(CompileError, match="is in the way"):
        open_run(stranger, identity)
    assert (stranger / "notes.txt").read_text() == "keep"


def test_resume_identifies_the_data_by_its_contents(sentiment_data, tmp_path):
    moved = tmp_path / "elsewhere.tsv"
    shutil.copy(sentiment_data[0], moved)
    same = load_dataset(str(moved)).content_fingerprint()
    assert same == load_dataset(str(sentiment_data[0])).content_fingerprint()  # another path, the same data
    lines = moved.read_text().splitlines()
    flipped = [lines[0]] + [f"{text}\t{1 - int(label)}" for text, label in (line.rsplit("\t", 1) for line in lines[1:])]
    moved.write_text("\n".join(flipped) + "\n")
    assert load_dataset(str(moved)).content_fingerprint() != same  # the same name, other labels


def test_labels_that_do_not_match_the_model(tuned, tmp_path):
    other = tmp_path / "other.tsv"
    other.write_text("sentence\tlabel\ngood\tpositive\n")
    with pytest.raises(DataError, match=r"labels \['positive'\].*are not among"):
        evaluate(tuned.path, load_dataset(other))
    code = main(["eval", str(tuned.path), "--data", str(other)])
    assert code == 2


def test_cli_finetune_errors_are_one_line(encoder_folder, sentiment_data, tmp_path, capsys):
    args = [
        "finetune",
        str(encoder_folder),
        "--task",
        "token-classification",
        "--data",
        str(sentiment_data[0]),
        "-o",
        str(tmp_path / "x"),
    ]
    assert main(args) == 2
    assert "is text-classification data, but the task is token-classification" in capsys.readouterr().err
    args = [
        "finetune",
        str(encoder_folder),
        "--task",
        "text-classification",
        "--data",
        str(sentiment_data[0]),
        "--val-fraction",
        "1",
        "-o",
        str(tmp_path / "x"),
    ]
    with pytest.raises(SystemExit):
        main(args)
    assert "argument --val-fraction: expected a fraction between 0 and 1 (both excluded), found '1'" in (
        capsys.readouterr().err
    )
    args[-4:-2] = ["--lora-rank", "4"]  # without --lora: not a full fine-tune without a word
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--lora-rank sets the rank of LoRA adapters" in err
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "notes.txt").write_text("keep")
    args = [
        "finetune",
        str(encoder_folder),
        "--task",
        "text-classification",
        "--data",
        str(sentiment_data[0]),
        "-o",
        str(tmp_path / "precious"),
        "--force",
    ]
    assert main(args) == 2 and (tmp_path / "precious" / "notes.txt").exists()


def test_cli_eval_refuses_an_unwritable_json_before_evaluating(tuned, sentiment_data, capsys, monkeypatch):
    import edgekiln.compiler.evaluate as evaluation

    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: pytest.fail("evaluated before refusing"))
    args = ["eval", str(tuned.path), "--data", str(sentiment_data[1]), "--json", "/no-such-folder/e.json"]
    assert main(args) == 2 and "cannot write /no-such-folder/e.json" in capsys.readouterr().err


def test_cli_eval_against_prints_report(tuned, sentiment_data, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(tuned.path, copy)
    assert main(["eval", str(tuned.path), "--data", str(sentiment_data[1]), "--against", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "precision" in out and "prediction agreement: 100.00 %" in out


def test_a_label_mismatch_with_many_classes_names_a_few_and_counts_the_rest():
    from types import SimpleNamespace

    from edgekiln.compiler.evaluate.predict import label_mapping

    model = SimpleNamespace(name="imagenet.art", labels=tuple(f"class {i}" for i in range(1000)))
    data = SimpleNamespace(source="photos/", labels=("cat", "dog"), task=DataTask.IMAGE_CLASSIFICATION)
    with pytest.raises(DataError) as raised:
        label_mapping(data, model)
    message = str(raised.value)
    assert "['cat', 'dog'] in photos/ are not among imagenet.art's 1000 labels" in message
    assert "'class 7'] and 992 more" in message and "class 8'" not in message
