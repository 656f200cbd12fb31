"""The TVM backend's compile side: its recipe options and the lowering pass they configure."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import CompileError
from ..tvm_build.target import runs_here, target_dict
from ..tvm_build.tuning import database_dir
from .lower_tvm import LowerTvm, LowerTvmConfig


class TvmOptions(BaseModel):
    """`[backend.options]` of a recipe whose backend is tvm."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tune_trials: int = Field(default=0, ge=0, description="MetaSchedule trials on this machine (0: untuned)")
    sequence_buckets: tuple[int, ...] | None = Field(
        default=None, min_length=1, description="sequence lengths to compile; None: the profile's"
    )

    @field_validator("tune_trials", mode="before")
    @classmethod
    def _whole(cls, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CompileError(f"--tune-trials must be a whole number >= 0, found {value!r}")
        return value

    @field_validator("sequence_buckets")
    @classmethod
    def _increasing(cls, buckets):
        if buckets is not None and (list(buckets) != sorted(set(buckets)) or buckets[0] < 1):
            raise CompileError(
                f"bad sequence buckets {list(buckets)}: they must be increasing positive lengths",
                hint="e.g. --sequence-buckets 32,64,128",
            )
        return buckets


def make_lowering(context) -> LowerTvm:
    """The lower_tvm pass for `context` (planning.BuildContext)."""
    try:
        import tvm  # noqa: F401
    except ImportError:
        raise CompileError("the tvm backend needs apache-tvm", hint="pip install 'edgekiln[tvm]'") from None
    ranges = {
        name: str(dim)
        for name, dims in (context.recipe.source.input_shapes or {}).items()
        for dim in dims
        if not isinstance(dim, int)
    }
    if ranges:
        name, dim = next(iter(ranges.items()))
        raise CompileError(
            f"TVM compiles one library per fixed shape; --input-shape gives {name!r} the range {dim}",
            hint=f"give {name!r} fixed sizes (e.g. the largest of the range), or use --backend "
            "onnxruntime or openvino for ranges",
        )
    profile, options = context.profile, context.options or TvmOptions()
    if options.tune_trials and not runs_here(profile):
        raise CompileError(
            f"tuning measures kernels on the machine that runs them; {profile.name} is not this machine",
            hint="drop --tune-trials, or compile (and tune) on the device itself",
        )
    cores = min(profile.cores, os.cpu_count() or 1) if runs_here(profile) else profile.cores
    target = target_dict(profile, cores=cores)
    database = database_dir(context.cache_root, target) if options.tune_trials else None
    return LowerTvm(
        LowerTvmConfig(
            target=target,
            arch=profile.arch.value,
            sequence_buckets=options.sequence_buckets or profile.sequence_buckets,
            batch_buckets=profile.batch_buckets,
            tune_trials=options.tune_trials,
            tuning_database=str(database) if database else None,
            fidelity=context.recipe.fidelity.model_copy(
                update={"max_abs_diff": min(context.recipe.fidelity.max_abs_diff, 1e-4)}
            ),
        )
    )
