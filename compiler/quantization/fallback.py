"""The per-layer fallback under an accuracy budget, one search for every int8 route that quantizes an
ONNX graph (ONNX Runtime's quantize pass; OpenVINO's QDQ route for a CNN): quantize every layer; while
the drop is over the budget, return the least accurate layers (lowest output SQNR against float, ranked
once, on the first attempt) to float, 1, 2, 4, … at a time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

import numpy as np

from .sensitivity import layer_report


class Candidate(Protocol):
    exclude: tuple[str, ...]  # the layers kept in float
    drop: float | None  # points lost against float; None without eval data


C = TypeVar("C", bound=Candidate)


def within(budget: float | None, drop: float | None) -> bool:
    """Whether a drop in points fits the budget (no budget, or no eval data to measure it: it does)."""
    return budget is None or drop is None or drop <= budget + 1e-9


def ranked_layers(state, quant_path: Path, nodes: list[str]) -> list[str]:
    """`nodes` of the build's float ONNX (`state`: a passes.base.BuildState), least accurate in the QDQ
    graph `quant_path` first: lowest output SQNR against float on the calibration data (else on probe
    feeds); a node without one last."""
    probe = (state.source.make_feeds(2, 32, np.random.default_rng(1)),)
    rows = layer_report(state.model_path, quant_path, nodes, state.calibration, probe)
    ordered = sorted(rows, key=lambda row: row["sqnr_db"] if row["sqnr_db"] is not None else float("inf"))
    return [row["node"] for row in ordered]


def within_budget(
    build: Callable[[tuple[str, ...]], C],
    rank: Callable[[C], list[str]],
    fits: Callable[[C], bool],
    discard: Callable[[C], None],
) -> tuple[C, list[dict]]:
    """The first candidate that fits (else the last tried), and the steps taken: how many layers each
    attempt kept in float and the drop it measured. Layers go back to float 1, 2, 4, … at a time, all
    but one at most: with every layer in float the model is the float one, not an int8 model (the
    caller's budget check then fails it). `discard` frees an attempt that is superseded."""
    attempt = build(())
    steps = [{"excluded": 0, "accuracy_drop": attempt.drop}]
    if fits(attempt):
        return attempt, steps
    ranked = rank(attempt)
    most = len(ranked) - 1
    count = min(1, most)
    while not fits(attempt) and len(attempt.exclude) < most:
        discard(attempt)
        attempt = build(tuple(ranked[:count]))
        steps.append({"excluded": len(attempt.exclude), "accuracy_drop": attempt.drop})
        count = min(count * 2, most)
    return attempt, steps
