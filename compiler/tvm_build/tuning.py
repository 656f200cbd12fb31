"""MetaSchedule tuning of a bucket's kernels on this machine. The database lives in the build cache,
one per target, so kernels already tuned (in earlier builds or other buckets) are not tuned again.

MetaSchedule's stock builder imports `tvm.s_tir.tensor_intrin` in every fresh worker pool (one
per batch of candidates), which takes 30-45 s here and hits the builder's 30 s timeout, so most
candidates fail to build. `build_candidate` is the same build without that import: the scheduled
TIR already carries any tensorized code, so the intrinsics' registry is not needed to compile it.
This module stays light because the build workers import it.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from ..errors import CompileError

TRIALS_PER_ROUND = 32


def database_dir(cache_root: Path, target: dict) -> Path:
    key = hashlib.sha256(json.dumps(target, sort_keys=True).encode()).hexdigest()[:16]
    return cache_root / "tvm-tuning" / key


def build_candidate(mod, target, _params):
    """MetaSchedule's default build, minus the slow tensor-intrinsics import (see the module doc)."""
    from tvm.driver import build as tvm_build
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock

    return tvm_build(RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(mod), target=target)


def tune_for_minutes(
    mods: Sequence,
    minutes: float,
    run_round: Callable[[object, float], int],
    clock: Callable[[], float] = time.monotonic,
) -> tuple[int, int]:
    """Tune `mods` (the buckets) in rounds until `minutes` of wall time are spent: a round gives each
    bucket `run_round(mod, deadline)` (TRIALS_PER_ROUND trials per kernel, stopping at the first
    measured batch past `deadline`, a `clock` time; it returns the trials measured). Stops early
    when a whole round measures nothing (every search space is exhausted). Returns (trials measured,
    rounds started)."""
    deadline = clock() + minutes * 60
    measured = rounds = 0
    while clock() < deadline:
        rounds += 1
        this_round = 0
        for mod in mods:
            if clock() >= deadline:
                break
            this_round += run_round(mod, deadline)
        measured += this_round
        if this_round == 0:
            break
    return measured, rounds


def tune(
    mod,
    target: dict,
    database: Path,
    trials: int,
    *,
    workers: int,
    per_kernel: int | None = None,
    remote: tuple | None = None,
    deadline: float | None = None,
) -> int:
    """Spend `trials` measured candidates on `mod`'s kernels (at most `per_kernel` each), adding the
    records to `database`; returns the number of candidates measured. The database is first seeded
    with each kernel's default schedule, measured the same way (tuning_seed). `remote` (a RemoteAddress and
    the board's arch) measures them on a board over TVM's RPC instead of on this machine. `deadline`
    (a time.monotonic() value) ends the run at the first measured batch past it."""
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    from .cpu_rewrites import prepare_passes
    from .tuning_seed import seed_defaults

    try:
        import xgboost  # noqa: F401  (MetaSchedule's cost model)
    except ImportError:
        raise CompileError(
            "--tune-trials needs xgboost for MetaSchedule's cost model",
            hint="pip install 'edgekiln[tvm]' (it brings xgboost-cpu)",
        ) from None
    drop_orphaned_file_handlers()  # before the LocalRunner: it logs when created
    drop_unnamed_handlers()
    if remote is None:
        runner, export = ms.runner.LocalRunner(), {}
    else:
        from .remote import check_remote, export_for, rpc_runner

        address, arch = remote
        check_remote(address)
        runner, export = rpc_runner(address), {"f_export": export_for(arch)}
    tvm_target = tvm.target.Target(target)
    with tvm_target:
        mod = tvm.transform.Sequential([*prepare_passes(target), relax.get_pipeline("zero")])(mod)
    builder = ms.builder.LocalBuilder(max_workers=workers, f_build=build_candidate, **export)
    measured = [0]
    stop = [] if deadline is None else [_stop_at(deadline)]
    try:
        seed_defaults(mod, tvm_target, database, builder, runner)
        if deadline is not None and time.monotonic() >= deadline:  # the seeding spent the budget
            return 0
        ms.relax_integration.tune_relax(
            mod,
            params={},
            target=tvm_target,
            work_dir=str(database),
            max_trials_global=trials,
            max_trials_per_task=per_kernel,
            num_trials_per_iter=TRIALS_PER_ROUND,
            seed=0,
            builder=builder,
            runner=runner,
            measure_callbacks=[*ms.measure_callback.MeasureCallback.create("default"), _counter(measured), *stop],
            # the gradient scheduler first visits every kernel, terminated or not: with a deadline, the
            # round-robin one, which skips the kernels _stop_at ended (a 1-minute budget ran 12 minutes)
            task_scheduler="gradient" if deadline is None else "round-robin",
        )
    finally:
        release_log_files(database)
    return measured[0]


def release_log_files(folder: Path) -> None:
    """MetaSchedule attaches file handlers writing into the tuning folder to its loggers and leaves them
    there: the next run in the process logs through them (its LocalRunner does when created), reopening
    files in a folder that may be gone by then (seen in CI: FileNotFoundError once an earlier build's
    folder was deleted). After a run, every handler writing under `folder` is detached and closed."""
    root = str(Path(folder).resolve())
    _detach_file_handlers(lambda filename: filename.startswith(root + "/"))


def drop_orphaned_file_handlers() -> None:
    """TVM's file handlers whose folder is gone (left by a run that did not release them): the next
    record would fail reopening their file."""
    _detach_file_handlers(lambda filename: not os.path.isdir(os.path.dirname(filename)))


def _detach_file_handlers(chosen: Callable[[str], bool]) -> None:
    import logging

    loggers = [logging.root.manager.loggerDict.get(name) for name in list(logging.root.manager.loggerDict)]
    for logger in [item for item in loggers if isinstance(item, logging.Logger) and item.name.startswith("tvm")]:
        for handler in list(logger.handlers):
            if isinstance(handler, logging.FileHandler) and chosen(handler.baseFilename):
                logger.removeHandler(handler)
                handler.close()


def drop_unnamed_handlers(logger_name: str = "tvm.s_tir.meta_schedule") -> None:
    """MetaSchedule's logging set-up (TVM 0.27, meta_schedule/logging.py `create_loggers`) rebuilds its
    logger from the names of the handlers it holds and fails with "'NoneType' object has no attribute
    'format'" when one has no name; it adds its own console and file handlers again on every run.
    Seen when a test process had tuned before (pytest-xdist worker); unnamed handlers are removed."""
    import logging

    logger = logging.getLogger(logger_name)
    for handler in [h for h in logger.handlers if h.get_name() is None]:
        logger.removeHandler(handler)


def _stop_at(deadline: float, clock: Callable[[], float] = time.monotonic):
    """A measure callback that ends every task once `clock()` passes `deadline`: MetaSchedule has no
    time budget, and one round over a model's kernels can take longer than the whole budget."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class StopAtDeadline(PyMeasureCallback):
        def apply(self, task_scheduler, task_id, candidates, builder_results, runner_results) -> None:
            if clock() < deadline:
                return
            for index, task in enumerate(task_scheduler.tasks_):
                if not task.is_terminated:
                    task_scheduler.terminate_task(index)

    return StopAtDeadline()


def _counter(count: list[int]):
    """A measure callback adding each batch's candidates to `count[0]`."""
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.measure_callback import PyMeasureCallback

    @derived_object
    class CountTrials(PyMeasureCallback):
        def apply(self, task_scheduler, task_id, candidates, builder_results, runner_results) -> None:
            count[0] += len(candidates)

    return CountTrials()
