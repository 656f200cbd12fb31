"""The TVM lowering pass configured from a target profile."""
from __future__ import annotations

import os
from pathlib import Path

from edgekiln.targets import TargetProfile

from ..errors import CompileError
from ..tvm_build.target import runs_here, target_dict
from ..tvm_build.tuning import database_dir
from .lower_tvm import LowerTvm, LowerTvmConfig


def tvm_lowering(profile: TargetProfile, tune_trials: int, cache_root: Path) -> LowerTvm:
    try:
        import tvm  # noqa: F401
    except ImportError:
        raise CompileError("the tvm backend needs apache-tvm", hint="pip install 'edgekiln[tvm]'") from None
    if not isinstance(tune_trials, int) or tune_trials < 0:
        raise CompileError(f"--tune-trials must be a whole number >= 0, found {tune_trials!r}")
    if tune_trials and not runs_here(profile):
        raise CompileError(f"tuning measures kernels on the machine that runs them; {profile.name} is not this "
                           "machine", hint="drop --tune-trials, or compile (and tune) on the device itself")
    cores = min(profile.cores, os.cpu_count() or 1) if runs_here(profile) else profile.cores
    target = target_dict(profile, cores=cores)
    database = database_dir(cache_root, target) if tune_trials else None
    return LowerTvm(LowerTvmConfig(target=target, arch=profile.arch.value,
                                   sequence_buckets=profile.sequence_buckets, batch_buckets=profile.batch_buckets,
                                   tune_trials=tune_trials, tuning_database=str(database) if database else None))
