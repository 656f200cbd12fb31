"""`--backend auto`: build the candidates a target allows, measure each, keep the best.

Candidates are recipes: every installed backend that can run on the target × its float precisions
(fp32; bf16 where the target has it) × its int8 modes (dynamic; static with calibration data) ×
pruning levels (none, and each `--prune-flops` level when training data is given). Each is built
(shared pass outputs come from the cache), evaluated on the eval data, and timed on this machine with
every artifact in its own process, interleaved: by default one eval example per call through
`Session.predict` (tokenization or image decoding included, the lengths the data has), or with
`timing="shape"` the model alone on one synthetic batch x sequence. The winner is the fastest within the accuracy budget
(or, with a latency budget, the most accurate under it); its recipe is compiled into the output, so
the artifact stores the plain recipe of the choice and rebuilds without the search.
"""

from __future__ import annotations

import glob
import json
import platform
import re
import shutil
import statistics
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from edgekiln.runtime.backends import backend_names, backend_spec
from edgekiln.runtime.manifest import REPORTS_DIR, Precision

from .errors import CompileError
from .folders import output_lock
from .planning import cannot_build
from .pruning.config import RecoveryConfig
from .quantization.config import QuantMode
from .recipe import Recipe

SELECTION_REPORT = "selection.json"


class Timing(str, Enum):
    """What candidates are timed on."""

    DATA = "data"  # one eval example per call through Session.predict, as an application calls it
    SHAPE = "shape"  # the model alone on one synthetic batch x sequence


class SelectionConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    accuracy_budget: float | None = Field(default=None, ge=0, description="allowed drop in points vs fp32")
    latency_budget_ms: float | None = Field(default=None, gt=0, description="instead: the most accurate under this")
    backends: tuple[str, ...] | None = Field(
        default=None, description="None: the target's preferred backends that need no on-device tuning"
    )
    prune_levels: tuple[float, ...] = ()
    static_twins: bool = Field(
        default=True, description="text models: also build each candidate whose backend takes static shapes with them"
    )
    static_sequences: tuple[int, ...] | None = Field(
        default=None, min_length=1, description="lengths static-shape twins pad to; None: the profile's buckets"
    )
    recover: RecoveryConfig | None = None  # applied to each pruned candidate
    timing: Timing = Timing.DATA
    timing_examples: int = Field(default=240, ge=1, description="timing=data: eval examples timed, in file order")
    batch: int = Field(default=1, ge=1, description="timing=shape: the batch timed")
    sequence: int = Field(default=128, ge=1, description="timing=shape: the sequence length timed")
    rounds: int = Field(default=6, ge=1)
    keep_candidates: bool = Field(default=False, description="keep every candidate artifact in OUTPUT.candidates/")

    @model_validator(mode="after")
    def _one_goal(self) -> SelectionConfig:
        if (self.accuracy_budget is None) == (self.latency_budget_ms is None):
            given = "both were given" if self.accuracy_budget is not None else "neither was given"
            raise CompileError(
                f"--backend auto chooses by one goal, and {given}",
                hint="pass --accuracy-budget POINTS (the fastest within it) or --latency-budget MS "
                "(the most accurate under it)",
            )
        return self


@dataclass
class Candidate:
    name: str
    recipe: Recipe
    path: Path | None = None
    build_s: float | None = None
    metric: float | None = None
    drop: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    size_mb: float | None = None
    error: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "recipe": self.recipe.model_dump(mode="json", exclude_none=True),
            "build_s": self.build_s,
            "metric": self.metric,
            "accuracy_drop": self.drop,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "size_mb": self.size_mb,
            "error": self.error,
        }


def candidates(profile, base: Recipe, config: SelectionConfig) -> list[Candidate]:
    """Every (backend, precision or int8 mode, pruning level) the target and the data allow."""
    names = config.backends or tuple(
        name for name in profile.preferred_backends if name in backend_names() and not backend_spec(name).target_fields
    )  # tvm: tuned on the board only
    found = []
    for backend in names:
        spec = backend_spec(backend)
        variants = [("fp32", {"precision": "fp32"})]
        if "bf16" in spec.precisions and Precision.BF16 in profile.precisions:
            variants.append(("bf16", {"precision": "bf16"}))
        for mode in ("dynamic", "static"):
            if mode in spec.quantizers and (base.quantize.calibration or not spec.quantizers[mode].needs_calibration):
                variants.append((f"int8-{mode}", {"quantize": mode, "accuracy_budget": config.accuracy_budget}))
        for level in (0.0, *config.prune_levels):
            pruned = {"prune_flops": level, "recover": config.recover} if level else {}
            for label, flags in variants:
                recipe = Recipe.from_flags(base, backend=backend, **flags, **pruned)
                if cannot_build(spec, profile, recipe) is None:
                    found.append(Candidate(f"{backend}-{label}" + (f"-pruned{level:g}" if level else ""), recipe))
    return found


def static_twins(pool: list[Candidate], profile, config: SelectionConfig) -> list[Candidate]:
    """Built text-model candidates whose backend takes `sequence_buckets` as an option (OpenVINO: static
    shapes, requests padded up), again with them: padding costs compute, shape changes cost OpenVINO
    re-preparation, and which wins depends on the workload, so both are measured."""
    from edgekiln.runtime.artifact import read_manifest
    from edgekiln.runtime.backends.spec import load_object

    if not config.static_twins:
        return []
    twins = []
    for candidate in pool:
        spec = backend_spec(candidate.recipe.backend.name)
        if candidate.error is not None or spec.options is None:
            continue
        if "sequence_buckets" not in load_object(spec.options).model_fields:
            continue
        tokenizer = read_manifest(candidate.path).tokenizer
        if tokenizer is None:  # not a text model: nothing to pad
            continue
        buckets = config.static_sequences or (  # the profile's, within what the model reads
            tuple(length for length in profile.sequence_buckets if length <= tokenizer.max_length)
            or (tokenizer.max_length,)
        )
        recipe = Recipe.from_flags(candidate.recipe, sequence_buckets=buckets)
        twins.append(Candidate(f"{candidate.name}-buckets", recipe))
    return twins


def select_build(
    model: Any,
    profile,
    output: Path,
    base: Recipe,
    config: SelectionConfig,
    *,
    force: bool = False,
    progress: Callable[[str], None] = lambda message: None,
):
    """Build, evaluate and time every candidate; compile the winner into `output` with selection.json."""
    if base.data.eval is None:
        raise CompileError("--backend auto compares candidates on labelled data", hint="pass --eval-data DEV")
    if base.quantize.mode is not QuantMode.NONE:
        raise CompileError(
            "--backend auto builds its own int8 candidates (dynamic; static with --calibration)",
            hint="drop --quantize; --accuracy-budget sets what they may lose",
        )
    raw = str(model).lower().endswith(".onnx") and base.source.image is None  # (--task does not apply to one)
    if raw or (not isinstance(model, (str, Path)) and base.source.image is None):
        raise CompileError(  # before any candidate is built, not after all of them
            "--backend auto compares accuracy on labelled data; a raw-tensor model has no labelled metric",
            hint="pick the backend yourself with --backend NAME",
        )
    from edgekiln.targets.host import cuda_here

    if profile.accelerator.value == "cuda" and not cuda_here():
        raise CompileError(  # before any candidate is built: none could be timed here
            f"--backend auto times its candidates on this machine, and {profile.name}'s artifacts run on a CUDA "
            "GPU, which this machine lacks",
            hint="run the selection on a machine with the GPU, or pick the backend yourself with --backend NAME",
        )
    output = Path(output).expanduser().resolve()
    with output_lock(candidates_folder(output)):  # one selection per output at a time
        _remove_stale(output)
        return _select(model, profile, output, base, config, force, progress)


def _remove_stale(output: Path) -> None:
    """Candidate folders an interrupted selection to `output` left (we hold the lock: none is live)."""
    ours = re.compile(rf"\.{re.escape(output.name)}\.candidates-[0-9a-f]{{8}}")
    for stale in output.parent.glob(f".{glob.escape(output.name)}.candidates-*"):
        if ours.fullmatch(stale.name) and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)


def _select(model, profile, output: Path, base: Recipe, config: SelectionConfig, force: bool, progress):
    from .api import compile

    work = (
        candidates_folder(output)
        if config.keep_candidates
        else output.parent / f".{output.name}.candidates-{uuid.uuid4().hex[:8]}"
    )
    pool = candidates(profile, base, config)
    try:
        for candidate in pool:
            _build(candidate, model, profile, work, progress)
        twins = static_twins(pool, profile, config)
        for candidate in twins:
            _build(candidate, model, profile, work, progress)
        pool += twins
        built = [c for c in pool if c.error is None]
        if not built:
            raise CompileError(f"no candidate could be built: {pool[0].error if pool else 'none fits the target'}")
        dataset = _evaluate(built, base, progress)
        _time(built, config, dataset)
        winner, reason = choose(built, config)
        if profile.arch.value != platform.machine().lower():  # a board's candidates timed on this CPU instead
            reason += f"; timed on this {platform.machine()} machine, not on {profile.name}"
        progress(f"auto: {winner.name} ({reason})")
        result = compile(model, profile, output, winner.recipe, force=force, progress=progress)
    finally:
        if not config.keep_candidates:
            shutil.rmtree(work, ignore_errors=True)
    _write_report(result.path, pool, winner, reason, config)
    return result, winner


def candidates_folder(output: Path) -> Path:
    """Where `keep_candidates` leaves the candidate artifacts, one folder each, named as in selection.json."""
    return output.parent / f"{output.name}.candidates"


def _build(candidate: Candidate, model, profile, work: Path, progress) -> None:
    import time

    from .api import ATTEMPTS_NOTE, compile

    progress(f"auto: building {candidate.name} …")
    started = time.perf_counter()
    from .passes.quantize import SlowerInt8Warning

    try:
        with warnings.catch_warnings():  # a slow int8 candidate is measured and passed over, not warned about
            warnings.simplefilter("ignore", SlowerInt8Warning)
            result = compile(model, profile, work / candidate.name, candidate.recipe, force=True)
    except CompileError as exc:  # e.g. int8 over the budget: the candidate is out, with its reason
        candidate.error = exc.message.split(ATTEMPTS_NOTE)[0]  # that file goes with the work folder
        return
    candidate.path, candidate.build_s = result.path, round(time.perf_counter() - started, 1)
    candidate.size_mb = round(sum(p.stat().st_size for p in result.path.rglob("*") if p.is_file()) / 1e6, 2)


def _evaluate(built: list[Candidate], base: Recipe, progress):
    from edgekiln.runtime import load

    from .data import DataTask, load_dataset
    from .evaluate import evaluate
    from .tasks import compiler_task

    task = load(built[0].path, verify=False).manifest.task
    metric = compiler_task(task).metric
    if metric is None:
        raise CompileError(
            f"--backend auto compares accuracy; a {task.value} model has no labelled metric",
            hint="pick the backend yourself with --backend NAME",
        )
    dataset = load_dataset(base.data.eval, task=DataTask(task.value), **base.data.reader_options)
    for candidate in built:
        progress(f"auto: evaluating {candidate.name} …")
        candidate.metric = round(100 * evaluate(candidate.path, dataset)[metric], 3)
    reference = next((c for c in built if c.name.endswith("-fp32")), built[0]).metric
    for candidate in built:
        candidate.drop = round(reference - candidate.metric, 3)
    return dataset


def _time(built: list[Candidate], config: SelectionConfig, dataset) -> None:
    from edgekiln.runtime.interleave import measure

    specs = {c.name: str(c.path) for c in built}
    if config.timing is Timing.DATA:
        items = timing_items(dataset, config.timing_examples)
        per_round = max(10, -(-len(items) // config.rounds))  # every item about once per candidate
        times = measure(open_predict, specs, items, rounds=config.rounds, per_round=per_round, cycle=True)
    else:
        times = measure(open_artifact, specs, _shape_feeds(built[0].path, config), rounds=config.rounds)
    for candidate in built:
        runs = sorted(times[candidate.name])
        candidate.p50_ms = round(statistics.median(runs), 3)
        candidate.p99_ms = round(runs[min(len(runs) - 1, int(0.99 * len(runs)))], 3)


def _shape_feeds(path: Path, config: SelectionConfig) -> dict:
    from edgekiln.runtime import load
    from edgekiln.runtime.bench import feeds_for

    session = load(path, verify=False)
    sequence = min(config.sequence, session.encoder.max_length) if session.encoder else config.sequence
    return feeds_for(session, config.batch, sequence, np.random.default_rng(0))


def timing_items(dataset, limit: int) -> list[str]:
    """The first `limit` eval examples as `Session.predict` takes them: texts, words joined by
    spaces, image paths."""
    from .data import ImageExample, TextExample

    def item(example) -> str:
        if isinstance(example, TextExample):
            return example.text
        return example.path if isinstance(example, ImageExample) else " ".join(example.tokens)

    return [item(example) for example in dataset.examples[:limit]]


def open_predict(_name: str, path: str):
    """Module-level (spawned processes import it): predict one example per call."""
    from edgekiln.runtime import load

    session = load(path)
    return lambda item: session.predict([item])


def open_artifact(_name: str, path: str):
    """Module-level (spawned processes import it): an artifact's run function."""
    from edgekiln.runtime import load

    return load(path).run


def choose(built: list[Candidate], config: SelectionConfig) -> tuple[Candidate, str]:
    if config.accuracy_budget is not None:
        fitting = [c for c in built if c.drop <= config.accuracy_budget + 1e-9]
        if not fitting:
            best = min(built, key=lambda c: c.drop)
            raise CompileError(
                f"no candidate stays within {config.accuracy_budget} points (smallest drop "
                f"{best.drop:.2f}, {best.name})",
                hint="raise --accuracy-budget",
            )
        winner = min(fitting, key=lambda c: c.p50_ms)
        return winner, (
            f"fastest within {config.accuracy_budget} points: p50 {winner.p50_ms:.2f} ms {_timed_on(config)}, "
            f"drop {winner.drop:.2f} points"
        )
    fitting = [c for c in built if c.p50_ms <= config.latency_budget_ms]
    if not fitting:
        fastest = min(built, key=lambda c: c.p50_ms)
        raise CompileError(
            f"no candidate runs under {config.latency_budget_ms} ms (fastest {fastest.p50_ms:.2f} ms, {fastest.name})",
            hint="raise --latency-budget",
        )
    winner = max(fitting, key=lambda c: (c.metric, -c.p50_ms))
    return winner, (
        f"most accurate under {config.latency_budget_ms} ms: {winner.metric:.2f}, p50 {winner.p50_ms:.2f} ms "
        f"{_timed_on(config)}"
    )


def _timed_on(config: SelectionConfig) -> str:
    if config.timing is Timing.DATA:
        return "per eval example"
    return f"at batch {config.batch} x sequence {config.sequence}"


def pareto(built: list[Candidate]) -> list[str]:
    """Candidates no other one beats on both latency and accuracy."""
    return [
        c.name
        for c in built
        if not any(
            o.p50_ms <= c.p50_ms and o.metric >= c.metric and (o.p50_ms < c.p50_ms or o.metric > c.metric)
            for o in built
        )
    ]


def _write_report(folder: Path, pool: list[Candidate], winner: Candidate, reason: str, config: SelectionConfig) -> None:
    from edgekiln.runtime.artifact import read_manifest
    from edgekiln.runtime.reports import write_report

    from .diagnostics.plots import selection_plot

    built = [c for c in pool if c.error is None]
    report = {
        "timed_on": platform.machine(),
        "goal": config.model_dump(mode="json"),
        "winner": winner.name,
        "reason": reason,
        "pareto": pareto(built),
        "candidates": [c.row() for c in pool],
    }
    reports = folder / REPORTS_DIR
    (reports / SELECTION_REPORT).write_text(json.dumps(report, indent=2))
    selection_plot(report, reports)
    write_report(folder, read_manifest(folder))
