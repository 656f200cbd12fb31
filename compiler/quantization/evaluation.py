"""Scoring and timing an ONNX file during quantization: the task metric on the eval data, the
prediction agreement with the float model, and batch-1 latency."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekiln.runtime.bench import BenchConfig, measure
from edgekiln.runtime.manifest import Task

from ..data import Dataset
from ..evaluate import evaluate_predictor
from ..evaluate.metrics import agreement
from ..evaluate.predictors import Predictor, image_encoder, make_encoder
from ..ort_sessions import cpu_session
from ..sources import ModelSource
from ..tasks import compiler_task


@dataclass(frozen=True)
class Score:
    metric: str
    value: float  # fraction in [0, 1]
    predictions: list


def model_runner(path: Path, threads: int):
    """feeds -> first output, for an ONNX file (ONNX Runtime) or an OpenVINO IR (.xml)."""
    if path.suffix == ".xml":
        from edgekiln.runtime.backends.openvino import compile_ir

        run = compile_ir(path, threads=threads, cache_dir=None)
        return lambda feeds: next(iter(run(feeds).values()))
    session = cpu_session(path, threads=threads)
    output = session.get_outputs()[0].name
    return lambda feeds: session.run([output], feeds)[0]


class Evaluator:
    """Scores ONNX files of one model on one labelled dataset."""

    def __init__(self, source: ModelSource, dataset: Dataset, threads: int) -> None:
        self.source, self.dataset, self.threads = source, dataset, threads
        self.encoder = (
            make_encoder(source.tokenizer_file, source.tokenizer)
            if source.image is None
            else image_encoder(source.image)
        )
        self.metric = compiler_task(dataset.task).metric

    def score(self, path: Path) -> Score:
        return self.score_runner(path.name, model_runner(path, self.threads))

    def score_runner(self, name: str, logits) -> Score:
        predictor = Predictor(name, Task(self.source.task.value), self.source.labels, self.encoder, logits)
        report, predictions = evaluate_predictor(predictor, self.dataset)
        return Score(self.metric, float(report[self.metric]), predictions)

    @staticmethod
    def agreement(first: Score, second: Score) -> float:
        return agreement(first.predictions, second.predictions)


def points_lost(reference: Score | None, candidate: Score | None) -> float | None:
    """The candidate's drop against the reference in points (None without eval data)."""
    return None if reference is None or candidate is None else round((reference.value - candidate.value) * 100, 3)


def bench_point(source: ModelSource, sequence: int, threads: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """The batch-1 feeds float and int8 are timed on, and how the report names them: with the sequence
    length the inputs got (`sequence`, or the model's maximum if shorter), and none where they have no
    sequence axis (an image model's)."""
    feeds = source.make_feeds(1, sequence, np.random.default_rng(0))
    other = source.make_feeds(1, 1 if sequence > 1 else 2, np.random.default_rng(0))
    lengths = [
        size for name in feeds for size, alt in zip(feeds[name].shape, other[name].shape, strict=False) if size != alt
    ]
    return feeds, {"batch": 1, **({"sequence": lengths[0]} if lengths else {}), "threads": threads}


def latency_ms(paths: list[Path], feeds: dict[str, np.ndarray], threads: int, rounds: int = 3) -> list[float]:
    """Median p50 of each model, measured in interleaved rounds so drift hits all alike."""
    runners = [model_runner(path, threads) for path in paths]
    config = BenchConfig(warmup=3, runs=10)
    p50s: list[list[float]] = [[] for _ in paths]
    for _ in range(rounds):
        for index, runner in enumerate(runners):
            stats = measure(runner, feeds, config, batch=1)
            p50s[index].append(stats["p50_ms"])
    return [float(np.median(values)) for values in p50s]
