"""Latency benchmarking of an artifact, optionally side by side with another runner (PyTorch eager).

Per (batch, sequence) point: warm-up runs, then a fixed number of timed runs or a time budget;
percentiles of wall time per call, throughput in items per second, and the highest resident
memory of the process seen during that point's runs.
"""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import InputError
from .manifest import Task, TensorSpec
from .progress import Progress
from .session import Session
from .synthetic import make_tensor_feeds, make_text_feeds, outside_range

Runner = Callable[[dict[str, np.ndarray]], Any]


DEFAULT_SEQUENCE = 128


@dataclass(frozen=True)
class BenchConfig:
    batches: tuple[int, ...] = (1,)
    sequences: tuple[int, ...] | None = None  # None: 128, or the artifact's longest sequence if shorter
    warmup: int = 5
    runs: int = 30
    seconds: float | None = None  # per-point time budget; then `runs` is the minimum
    seed: int = 0

    def __post_init__(self) -> None:
        for name, values in (
            ("batch", self.batches),
            ("sequence", (DEFAULT_SEQUENCE,) if self.sequences is None else self.sequences),
        ):
            if not values or any(not isinstance(v, int) or v < 1 for v in values):
                raise InputError(f"{name} sizes must be positive integers, found {list(values)}")
        if self.warmup < 0 or self.runs < 1:
            raise InputError(f"need warmup >= 0 and runs >= 1, found warmup={self.warmup}, runs={self.runs}")
        if self.seconds is not None and self.seconds <= 0:
            raise InputError(f"the time budget must be positive, found {self.seconds}")


def feeds_for(session: Session, batch: int, sequence: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Full-length synthetic inputs shaped for this artifact."""
    if session.manifest.tokenizer is None or session.task is Task.RAW:  # raw and image tensors
        return make_tensor_feeds(session.manifest.inputs, batch, sequence, rng)  # a range's sizes: brought into it
    if sequence > session.encoder.max_length:
        raise InputError(f"sequence length {sequence} exceeds the artifact's maximum {session.encoder.max_length}")
    spec = session.manifest.tokenizer
    return make_text_feeds(
        batch,
        sequence,
        rng,
        names=tuple(spec.feeds),
        vocab_size=session.encoder.vocab_size(),
        pad_id=spec.pad_id,
        max_length=spec.max_length,
        pad_rows=False,
    )


def fixed_batch(inputs: Sequence[TensorSpec]) -> int | None:
    """The one batch a model without a dynamic first axis takes: every input's first size when they
    agree, else 1 (one call holds one item: inputs without a common batch axis); None when some input's
    first axis is dynamic."""
    if any(spec.shape and isinstance(spec.shape[0], str) for spec in inputs):
        return None
    sizes = {spec.shape[0] if spec.shape else 1 for spec in inputs}
    return sizes.pop() if len(sizes) == 1 and min(sizes) >= 1 else 1


def check_requested(inputs: Sequence[TensorSpec], batches: Sequence[int], sequences: Sequence[int] | None) -> None:
    """Sizes a user asked for (`bench --batch/--seq`) that an input's declared range does not take are
    refused, as is a batch other than a fixed one; sizes not asked for are brought into the range (and
    the report names the sizes run)."""
    fixed = fixed_batch(inputs)
    wrong = [batch for batch in batches if fixed is not None and batch != fixed]
    if wrong:
        raise InputError(
            f"--batch {wrong[0]}: this artifact takes batch {fixed} only (input {inputs[0].name} is "
            f"{list(inputs[0].shape)})",
            hint=f"pass --batch {fixed}, or recompile with a dynamic or ranged batch axis (--input-shape)",
        )
    for spec in inputs:
        for axis, dimension in enumerate(spec.shape):
            for wanted in (batches if axis == 0 else sequences or ()) if isinstance(dimension, str) else ():
                takes = outside_range(dimension, wanted)
                if takes is not None:
                    flag = "--batch" if axis == 0 else "--seq"
                    raise InputError(
                        f"{flag} {wanted} is not a size input {spec.name} was compiled for on axis {axis} ({dimension})",
                        hint=f"pass {flag} within {takes}",
                    )


def _ran(session: Session, feeds: dict[str, np.ndarray], batch: int, sequence: int | None) -> tuple:
    """The (batch, sequence) the feeds have: a raw input's declared range may have brought them into it."""
    if session.manifest.tokenizer is not None and session.task is not Task.RAW:
        return batch, sequence
    specs = session.manifest.inputs
    batch = next(
        (int(feeds[s.name].shape[0]) for s in specs if s.shape and isinstance(s.shape[0], str)),
        fixed_batch(specs) or batch,
    )
    if sequence is not None:
        sizes = (feeds[s.name].shape[a] for s in specs for a, d in enumerate(s.shape) if a and isinstance(d, str))
        sequence = int(next(sizes, sequence))
    return batch, sequence


def has_sequence_axis(session: Session) -> bool:
    """Whether a sequence size means anything here: text, or a raw input with a dynamic axis past the batch."""
    if session.manifest.image is not None:
        return False
    if session.manifest.tokenizer is not None:
        return True
    return any(isinstance(size, str) for spec in session.manifest.inputs for size in spec.shape[1:])


def benchmark(
    session: Session,
    config: BenchConfig,
    *,
    load_seconds: float,
    against: tuple[str, Callable[[], Runner]] | None = None,
    show_progress: bool | None = None,
) -> dict:
    """Benchmark the artifact at every point, then (if given) the `against` runner on the same inputs.

    `against` is (name, factory); the factory is called only after the artifact's points are done,
    so the artifact's memory figures do not include the other model.
    """
    rng = np.random.default_rng(config.seed)
    sequences = (config.sequences or default_sequences(session)) if has_sequence_axis(session) else (None,)
    inputs: dict[tuple, dict[str, np.ndarray]] = {}
    for batch, sequence in ((b, s) for b in config.batches for s in sequences):
        feeds = feeds_for(session, batch, sequence or 1, rng)
        inputs.setdefault(_ran(session, feeds, batch, sequence), feeds)
    grid = list(inputs)
    progress = Progress(len(grid) * (2 if against else 1), "bench", enabled=show_progress)
    points = []
    for batch, sequence in grid:
        stats = measure(session.run, inputs[(batch, sequence)], config, batch)
        points.append({"batch": batch, "seq": sequence, **stats})
        progress.advance(f"artifact {point_name(batch, sequence)}: p50 {stats['p50_ms']:.2f} ms")
    report = _header(session, config, load_seconds)
    if against is not None:
        name, factory = against
        started = time.perf_counter()
        runner = factory()
        report["against"] = {"name": name, "load_seconds": round(time.perf_counter() - started, 3)}
        for point in points:
            stats = measure(runner, inputs[(point["batch"], point["seq"])], config, point["batch"])
            point["against"] = stats
            point["speedup_p50"] = round(stats["p50_ms"] / point["p50_ms"], 3)
            progress.advance(f"{name} {point_name(point['batch'], point['seq'])}: p50 {stats['p50_ms']:.2f} ms")
    if session.manifest.image is not None and session.encoder is not None:  # decode + preprocess, apart
        from .images.bench import measure_front_end

        report["preprocess"] = measure_front_end(session.encoder, config, rng, measure)
    progress.close()
    report["points"] = points
    return report


def default_sequences(session: Session) -> tuple[int, ...]:
    """The sequence size measured when none is asked for: DEFAULT_SEQUENCE, or a text model's longest
    sequence when that is shorter (a TVM artifact built for 32 tokens)."""
    encoder = session.encoder
    longest = getattr(encoder, "max_length", None) if session.manifest.tokenizer is not None else None
    return (min(DEFAULT_SEQUENCE, longest) if longest else DEFAULT_SEQUENCE,)


def point_name(batch: int, sequence: int | None) -> str:
    return f"batch {batch}" if sequence is None else f"batch {batch} × seq {sequence}"


def measure(runner: Runner, feeds: dict[str, np.ndarray], config: BenchConfig, batch: int) -> dict:
    for _ in range(config.warmup):
        runner(feeds)
    times, peak = [], current_rss_mb()
    deadline = None if config.seconds is None else time.perf_counter() + config.seconds
    while len(times) < config.runs or (deadline is not None and time.perf_counter() < deadline):
        started = time.perf_counter()
        runner(feeds)
        times.append((time.perf_counter() - started) * 1e3)
        peak = max(peak, current_rss_mb())
    samples = np.asarray(times)
    p50, p90, p99 = np.percentile(samples, [50, 90, 99])
    return {
        "p50_ms": round(float(p50), 4),
        "p90_ms": round(float(p90), 4),
        "p99_ms": round(float(p99), 4),
        "mean_ms": round(float(samples.mean()), 4),
        "runs": len(times),
        "throughput": round(batch * 1e3 / float(samples.mean()), 2),
        "peak_rss_mb": round(peak, 1),
    }


def _header(session: Session, config: BenchConfig, load_seconds: float) -> dict:
    manifest = session.manifest
    return {
        "artifact_id": manifest.artifact_id,
        "source": manifest.source,
        "backend": manifest.backend,
        "target": manifest.target.name,
        "precision": manifest.precision.value,
        "threads": session.threads,
        "warmup": config.warmup,
        "runs": config.runs,
        "seconds_per_point": config.seconds,
        "load_seconds": round(load_seconds, 3),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
        },
    }


def current_rss_mb() -> float:
    """Resident memory of this process now (Linux), else its peak so far."""
    try:
        with open("/proc/self/statm") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        scale = 1 if platform.system() == "Darwin" else 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def format_table(report: dict) -> str:
    header = ["batch", "seq", "p50 ms", "p90 ms", "p99 ms", "mean ms", "items/s", "peak MB"]
    with_against = "against" in report
    if with_against:
        header += [f"{report['against']['name']} p50", "speed-up"]
    rows = []
    for p in report["points"]:
        row = [
            p["batch"],
            "-" if p["seq"] is None else p["seq"],  # an image model's inputs have one size
            p["p50_ms"],
            p["p90_ms"],
            p["p99_ms"],
            p["mean_ms"],
            p["throughput"],
            p["peak_rss_mb"],
        ]
        if with_against:
            row += [p["against"]["p50_ms"], f"{p['speedup_p50']:.2f}x"]
        rows.append([f"{v:.2f}" if isinstance(v, float) else str(v) for v in row])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths))]
    lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in rows]
    front = report.get("preprocess")
    if front is not None:
        lines.append(
            f"decode + preprocess ({front['image']}, per image, apart from the model): "
            f"p50 {front['p50_ms']:.2f} ms, p90 {front['p90_ms']:.2f} ms"
        )
    return "\n".join(lines)
