"""Warming an artifact up before its first real request, so that request is not the one that pays for
one-time work: ONNX Runtime's and TVM's first call (memory arenas, kernel choices), and for an OpenVINO
artifact with static shapes the compile of each sequence length (0.6-0.9 s each without OpenVINO's
model cache, ~30 ms with it), which otherwise lands on the first request of each length as a p99 of
hundreds of milliseconds. `edgekiln serve` warms every model up before it listens."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .manifest import Task
from .synthetic import range_of

TEXT_LENGTH = 32  # one call at this many tokens warms a dynamic-shape text model (capped at its maximum)


@dataclass(frozen=True)
class WarmUp:
    shapes: tuple[tuple[int, int | None], ...]  # (batch, sequence length; None: image or raw tensors) per call
    seconds: float

    def describe(self) -> str:
        if not self.shapes:
            return "no warm-up call (inputs with dynamic axes of unknown range)"
        calls = ", ".join(f"{batch}x{length}" if length else f"batch {batch}" for batch, length in self.shapes)
        return f"{len(self.shapes)} warm-up call(s) ({calls}) in {self.seconds:.2f} s"


def warm_up(session, batches: Sequence[int] = (1,)) -> WarmUp:
    """One call on synthetic inputs per (batch, length): each static sequence length of an OpenVINO or
    TVM artifact with static shapes, else one length, for each of `batches` (in order, up to the number
    of static models OpenVINO keeps). The outputs are discarded. Other batch sizes (a server's merged
    requests) still meet their first call later."""
    from .bench import feeds_for

    if not batches or any(not isinstance(b, int) or isinstance(b, bool) or b < 1 for b in batches):
        raise InputError(f"warm-up batch sizes must be positive integers, found {list(batches)}")
    started = time.perf_counter()
    rng = np.random.default_rng(0)
    shapes = [(batch, length) for batch in batches for length in _lengths(session)]
    limit = getattr(session.backend, "static_limit", None)  # more would run on the dynamic model anyway
    shapes = shapes[:limit] if limit is not None else shapes
    for batch, length in shapes:
        session.run(feeds_for(session, batch, length or 1, rng))
    return WarmUp(tuple(shapes), time.perf_counter() - started)


def _lengths(session) -> tuple[int | None, ...]:
    text = session.manifest.tokenizer is not None and session.task is not Task.RAW
    if not text:  # image and raw tensors: one call at their fixed shapes, a declared range's least size
        return () if any(_unknown_axes(spec) for spec in session.manifest.inputs) else (None,)
    longest = session.encoder.max_length
    static = tuple(length for length in getattr(session.backend, "static_lengths", ()) if length <= longest)
    return static or (min(TEXT_LENGTH, longest),)


def _unknown_axes(spec) -> bool:
    """A dynamic axis past the first with no declared range: which sizes the model accepts is unknown
    (a convolution may need more than 1), so no call is made up for it."""
    return any(
        not (isinstance(size, int) and size >= 0) and (not isinstance(size, str) or range_of(size) is None)
        for size in spec.shape[1:]
    )
