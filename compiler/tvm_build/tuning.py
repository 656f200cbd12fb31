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


def tune(mod, target: dict, database: Path, trials: int, *, workers: int) -> None:
    """Spend `trials` measured candidates on `mod`'s kernels, adding the records to `database`."""
    import tvm
    from tvm import relax
    from tvm.relax import transform
    from tvm.s_tir import meta_schedule as ms

    try:
        import xgboost  # noqa: F401  (MetaSchedule's cost model)
    except ImportError:
        raise CompileError(
            "--tune-trials needs xgboost for MetaSchedule's cost model",
            hint="pip install 'edgekiln[tvm]' (it brings xgboost-cpu)",
        ) from None
    tvm_target = tvm.target.Target(target)
    with tvm_target:
        mod = tvm.transform.Sequential(
            [transform.DecomposeOpsForInference(), transform.CanonicalizeBindings(), relax.get_pipeline("zero")]
        )(mod)
    database.mkdir(parents=True, exist_ok=True)
    ms.relax_integration.tune_relax(
        mod,
        params={},
        target=tvm_target,
        work_dir=str(database),
        max_trials_global=trials,
        num_trials_per_iter=TRIALS_PER_ROUND,
        seed=0,
        builder=ms.builder.LocalBuilder(max_workers=workers, f_build=build_candidate),
        runner=ms.runner.LocalRunner(),
    )
