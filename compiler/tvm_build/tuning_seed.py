"""Seed a MetaSchedule database with edgekiln's default CPU schedules before tuning.

Each kernel of the module gets its default schedule (cpu_schedules) built and measured with the
tuning run's own builder and runner (here or on a board), and committed as an ordinary tuning
record. Two effects: the build applies a database's best record per kernel, so a tuned kernel is
never slower than its default (as measured by the same runner); and MetaSchedule's evolutionary
search starts part of its population from the database's best records, so the search starts at
the default rather than from random samples. A kernel whose default is already in the database
(an earlier run) is not measured again.
"""

from __future__ import annotations

import logging
from pathlib import Path

_log = logging.getLogger(__name__)


def seed_defaults(mod, tvm_target, database: Path, builder, runner) -> int:
    """Measure and record the default schedule of every kernel of `mod` (legalized and fused, as
    MetaSchedule extracts it) that the database lacks it for; returns the kernels recorded."""
    from tvm.s_tir import meta_schedule as ms

    database.mkdir(parents=True, exist_ok=True)
    db = ms.database.JSONDatabase(work_dir=str(database))
    pending = []  # (workload module, schedule, argument info)
    for task in ms.relax_integration.extract_tasks(mod, tvm_target):
        workload = task.dispatched[0]
        sch = default_schedule(workload["main"], tvm_target)
        if sch is not None and not _recorded(db, workload, sch.trace):
            pending.append((workload, sch, ms.arg_info.ArgInfo.from_prim_func(workload["main"])))
    if not pending:
        return 0
    built = builder.build([ms.builder.BuilderInput(sch.mod, tvm_target) for _, sch, _ in pending])
    ok = [(item, result) for item, result in zip(pending, built, strict=True) if not result.error_msg]
    futures = runner.run([ms.runner.RunnerInput(result.artifact_path, "cpu", item[2]) for item, result in ok])
    recorded = 0
    for ((workload, sch, args), _), future in zip(ok, futures, strict=True):
        measured = future.result()
        if measured.error_msg or not measured.run_secs:  # the build falls back the same way at compile
            _log.info("default schedule of a kernel not measured for seeding: %s", measured.error_msg)
            continue
        seconds = [float(s) for s in measured.run_secs]
        db.commit_tuning_record(
            ms.database.TuningRecord(sch.trace, db.commit_workload(workload), seconds, tvm_target, args)
        )
        recorded += 1
    return recorded


def default_schedule(func, tvm_target):
    """The schedule the first default rule that applies gives `func`, or None."""
    from .cpu_schedules import first_schedule

    with tvm_target:
        found = first_schedule(func, tvm_target)
    return None if found is None else found[1]


def _recorded(db, workload, trace) -> bool:
    """Whether the database holds a record of `workload` with this very schedule."""
    if not db.has_workload(workload):
        return False
    wanted = str(trace)
    records = db.get_top_k(db.commit_workload(workload), 1 << 20)
    return any(str(record.trace) == wanted for record in records)
