"""Interleaved latency measurement with one process per runner.

Runtimes' worker threads spin for a while after each call; in one shared process they steal the
cores from whichever runner is timed next (PyTorch measured 933 ms instead of 25 ms that way).
Each runner therefore lives in its own process, and the runners are timed in alternating rounds,
one process at a time, so machine noise falls on all of them alike. Separate processes are not
enough on their own: ONNX Runtime's worker keeps a core busy for about 40 ms after a call returns,
longer than a whole round of a fast model, so the next runner's round ran beside it (EfficientNet-Lite0
int8 on 2 cores: 6.5 ms a call instead of 2.4). A runner therefore reports its round only once its
process has gone idle (`settle`), and the next round starts on quiet cores. A runner that calls
another process (an HTTP client of `edgekiln serve`) names it: a run function with a `watched_pids`
attribute also waits for those processes to go idle (Linux; elsewhere only its own process is watched).

`feeds` is one input given to every call, or with `cycle=True` a sequence whose items the calls
take in turn (a real workload: one sentence per call), the same items in the same order in every
runner.
"""

from __future__ import annotations

import itertools
import multiprocessing
import time
from collections.abc import Callable
from typing import Any

Factory = Callable[[str, Any], Callable]  # (name, spec) -> run(feeds); must be a module-level function
# run may carry `watched_pids`: other processes it calls, waited on as its own after each round
__all__ = ["Factory", "measure"]


TIMEOUT_S = 600.0  # one round of one runner; a runner that died or hangs is reported, not waited for
SETTLE_STEP_S = 0.01  # a runner samples its own CPU time this often after a round (the clock ticks 4 ms here)
SETTLE_IDLE = 0.2  # idle: its threads used under a fifth of one core over a step ...
SETTLE_STEPS = 2  # ... for this many steps in a row (a spinning worker pauses now and then)
SETTLE_MAX_S = 1.0  # a runner that never goes idle (a busy background thread) is not waited on longer


def settle(step: float = SETTLE_STEP_S, limit: float = SETTLE_MAX_S, others: tuple[int, ...] = ()) -> float:
    """Wait until this process's threads, and those of the processes `others`, stop using the CPU
    (spinning workers gone to sleep), at most `limit` seconds; returns the seconds waited."""
    started = time.perf_counter()
    before, quiet = _cpu_seconds(others), 0
    while quiet < SETTLE_STEPS and time.perf_counter() - started < limit:
        time.sleep(step)
        now = _cpu_seconds(others)
        quiet = quiet + 1 if now - before < step * SETTLE_IDLE else 0
        before = now
    return time.perf_counter() - started


def _cpu_seconds(others: tuple[int, ...]) -> float:
    """CPU seconds used so far by this process and the processes `others` (a process's CPU clock is
    (~pid << 3) | 2 on Linux; one that has exited, or a platform without such clocks, counts 0)."""
    total = time.process_time()
    for pid in others:
        try:
            total += time.clock_gettime(((~pid) << 3) | 2)
        except (OSError, AttributeError, OverflowError):
            pass
    return total


def _worker(factory: Factory, name: str, spec: Any, feeds: Any, cycle: bool, pipe) -> None:
    try:
        run = factory(name, spec)
        for warmup in itertools.islice(_items(feeds, cycle), 3):
            run(warmup)
        items = _items(feeds, cycle)
        while (calls := pipe.recv()) > 0:
            times = []
            for _ in range(calls):
                item = next(items)
                started = time.perf_counter()
                run(item)
                times.append((time.perf_counter() - started) * 1e3)
            settle(others=getattr(run, "watched_pids", ()))
            pipe.send(times)
    except Exception as exc:  # reported to the parent as the runner's failure
        pipe.send(f"{type(exc).__name__}: {exc}")


def _items(feeds: Any, cycle: bool):
    return itertools.cycle(feeds) if cycle else itertools.repeat(feeds)


def _receive(pipe, name: str) -> list[float]:
    if not pipe.poll(TIMEOUT_S):
        raise RuntimeError(f"runner {name} gave no timing within {TIMEOUT_S:.0f} s")
    answer = pipe.recv()
    if isinstance(answer, str):
        raise RuntimeError(f"runner {name} failed: {answer}")
    return answer


def measure(
    factory: Factory,
    specs: dict[str, Any],
    feeds: Any,
    *,
    rounds: int = 10,
    per_round: int = 10,
    cycle: bool = False,
) -> dict[str, list[float]]:
    """Milliseconds per call for each runner; one slower than 0.5 s a call gets one call per round.
    With `cycle`, the timed calls (a first probe call included) take feeds[0], feeds[1], … in turn,
    after three warm-up calls on the first items."""
    if cycle and not len(feeds):
        raise ValueError("cycle=True needs at least one item in feeds")
    context = multiprocessing.get_context("spawn")
    pipes = {}
    for name, spec in specs.items():
        mine, theirs = context.Pipe()
        context.Process(target=_worker, args=(factory, name, spec, feeds, cycle, theirs), daemon=True).start()
        pipes[name] = mine
    calls = {}
    for name, pipe in pipes.items():
        pipe.send(1)
        calls[name] = 1 if _receive(pipe, name)[0] > 500 else per_round
    times: dict[str, list[float]] = {name: [] for name in specs}
    for _ in range(rounds):
        for name, pipe in pipes.items():
            pipe.send(calls[name])
            times[name].extend(_receive(pipe, name))
    for pipe in pipes.values():
        pipe.send(0)
    return times
