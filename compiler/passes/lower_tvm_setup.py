"""The TVM backend's compile side: its recipe options and the lowering pass they configure."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgekiln.targets.schema import TvmKind

from ..errors import CompileError
from ..tvm_build.remote import parse_remote
from ..tvm_build.shapes import SequenceBuckets
from ..tvm_build.target import check_cpu_name, local_target, runs_here
from ..tvm_build.tuning import database_dir
from ..tvm_build.tuning_db import fingerprint
from .lower_tvm import LowerTvm, LowerTvmConfig


class TvmOptions(BaseModel):
    """`[backend.options]` of a recipe whose backend is tvm."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tune_trials: int = Field(default=0, ge=0, description="MetaSchedule trials on this machine (0: untuned)")
    tune_minutes: float = Field(default=0, ge=0, description="MetaSchedule wall-clock budget instead of trials")
    tune_remote: str | None = Field(
        default=None, description="measure candidates on a board: HOST:PORT or tracker://HOST:PORT/KEY (TVM RPC)"
    )
    sequence_buckets: SequenceBuckets = Field(
        default=None, min_length=1, description="sequence lengths to compile; None: the profile's"
    )

    @field_validator("tune_trials", mode="before")
    @classmethod
    def _whole(cls, value):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise CompileError(f"--tune-trials must be a whole number >= 0, found {value!r}")
        return value

    @field_validator("tune_minutes", mode="before")
    @classmethod
    def _minutes(cls, value):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
            raise CompileError(f"--tune-minutes must be a number of minutes >= 0, found {value!r}")
        return value

    @field_validator("tune_remote")
    @classmethod
    def _address(cls, value):
        return None if value is None else str(parse_remote(value))

    @model_validator(mode="after")
    def _one_budget(self):
        if self.tune_trials and self.tune_minutes:
            raise CompileError(
                "--tune-trials and --tune-minutes are two budgets for the same search", hint="give one of them"
            )
        if self.tune_remote and not (self.tune_trials or self.tune_minutes):
            raise CompileError(
                "--tune-remote names where to measure tuning candidates, but no tuning was asked for",
                hint="add --tune-trials N (or --tune-minutes M)",
            )
        return self


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
    check_cpu_name(profile)
    tuning = bool(options.tune_trials or options.tune_minutes)
    if tuning and options.tune_remote and profile.tvm_target.kind is not TvmKind.LLVM:
        raise CompileError(
            f"--tune-remote measures CPU kernels; {profile.name} is a {profile.tvm_target.kind.value} target",
            hint="drop --tune-remote (GPU builds use dlight's schedules)",
        )
    if tuning and not options.tune_remote and not runs_here(profile):
        gpu = profile.tvm_target.kind is not TvmKind.LLVM  # --tune-remote measures CPU kernels only
        raise CompileError(
            f"tuning measures kernels on the machine that runs them; {profile.name} is not this machine"
            + (f" ({profile.tvm_target.kind.value} kernels are not tuned: dlight schedules them)" if gpu else ""),
            hint="drop --tune-trials/--tune-minutes"
            if gpu
            else "tune on the board over TVM's RPC with --tune-remote HOST:PORT, or drop --tune-trials/--tune-minutes",
        )
    target = local_target(profile)
    database, records = _database(context.cache_root, target, bool(options.tune_trials or options.tune_minutes))
    return LowerTvm(
        LowerTvmConfig(
            target=target,
            arch=profile.arch.value,
            isa=profile.isa,
            sequence_buckets=options.sequence_buckets or profile.sequence_buckets,
            sequence_buckets_given=options.sequence_buckets is not None,
            batch_buckets=profile.batch_buckets,
            tune_trials=options.tune_trials,
            tune_minutes=options.tune_minutes,
            tune_remote=options.tune_remote,
            tuning_database=str(database) if database else None,
            tuning_fingerprint=records,
            fidelity=context.recipe.fidelity.model_copy(
                update={"max_abs_diff": min(context.recipe.fidelity.max_abs_diff, 1e-4)}
            ),
        )
    )


def _database(cache_root, target: dict, tuning: bool):
    """(the target's tuning database folder or None, the fingerprint of its records or None).

    An untuned build applies the records the database already holds (tuned earlier, by another
    model with the same kernels, or imported), so its cache key names them; a GPU build applies
    none (dlight schedules it). A tuned build's key leaves the fingerprint out: its own tuning adds
    records, and compiling it again with the same trials is a cache hit rather than a new search.
    """
    if target["kind"] == "cuda" or cache_root is None:
        return None, None
    folder = database_dir(cache_root, target)
    records = fingerprint(folder)
    if tuning:
        return folder, None
    return (folder, records) if records else (None, None)
