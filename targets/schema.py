"""Typed schema of a target profile. Profiles are TOML files in `profiles/`; unknown keys are errors."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from edgekiln.runtime.manifest import Accelerator, BackendName, Precision

# The instruction-set names a profile's `isa` may use (x86: /proc/cpuinfo's spelling, sse4.x with a
# dot). TVM artifacts record them and refuse to load on a CPU without them, and the int8 passes choose
# by them, so a misspelt name is refused when the profile is read.
X86_ISA = (
    "sse4.2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
    "avx_vnni",
    # more that LLVM generates code for with -mcpu=native (the host profile's TVM builds)
    "sse4.1",
    "ssse3",
    "popcnt",
    "f16c",
    "bmi1",
    "bmi2",
    "movbe",
    "avx512cd",
    "avx512dq",
    "avx512ifma",
    "avx512vbmi",
    "avx512_vbmi2",
    "avx512_bitalg",
    "avx512_vpopcntdq",
    "avx512_fp16",
    "gfni",
    "vaes",
    "vpclmulqdq",
    "amx_tile",
)
ARM_ISA = ("neon", "fp16", "dotprod", "i8mm", "bf16", "sve", "sve2")


class Arch(str, Enum):
    X86_64 = "x86_64"
    AARCH64 = "aarch64"


class TvmKind(str, Enum):
    LLVM = "llvm"
    CUDA = "cuda"


class TvmTarget(BaseModel):
    """TVM's target for this device, in TVM 0.27's dict form (a `[tvm_target]` table in the profile).
    For CUDA, the host code is built for the profile's CPU architecture."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: TvmKind
    mtriple: str | None = Field(default=None, description="LLVM triple, e.g. aarch64-linux-gnu; None: this machine's")
    mcpu: str | None = Field(default=None, description="LLVM CPU name, e.g. cortex-a72; 'native' for this machine")
    mattr: tuple[str, ...] = Field(default=(), description="LLVM features, e.g. ['+neon']")
    arch: str | None = Field(default=None, pattern=r"^sm_\d+$", description="CUDA compute capability, e.g. sm_87")

    @model_validator(mode="after")
    def _fields_match_kind(self) -> TvmTarget:
        if self.kind is TvmKind.LLVM and self.arch is not None:
            raise ValueError("'arch' is a CUDA setting; an llvm target takes mtriple/mcpu/mattr")
        if self.kind is TvmKind.CUDA and (self.mtriple or self.mcpu or self.mattr):
            raise ValueError("a cuda target takes only 'arch'; the host CPU comes from the profile's arch")
        return self


class TargetProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9\-]*$")
    description: str
    arch: Arch
    isa: tuple[str, ...] = Field(description="instruction-set features the code may assume, e.g. avx2, neon")
    cores: int = Field(gt=0)
    threads: int = Field(gt=0, description="default inference threads")
    accelerator: Accelerator = Accelerator.NONE
    precisions: tuple[Precision, ...] = Field(min_length=1)
    # Backend names, in order of preference (see `edgekiln targets` for the installed ones).
    preferred_backends: tuple[BackendName, ...] = Field(min_length=1)
    tvm_target: TvmTarget | None = None  # needed by the tvm backend only
    # Backends that need fixed shapes (TVM) compile one model per (batch, sequence) bucket.
    sequence_buckets: tuple[int, ...] = Field(default=(32, 64, 128), min_length=1)
    batch_buckets: tuple[int, ...] = Field(default=(1,), min_length=1)
    # Structured pruning rounds FFN widths (and conv channels) to a multiple of this (SIMD width).
    prune_multiple: int = Field(default=8, ge=1)

    @field_validator("threads")
    @classmethod
    def _threads_within_cores(cls, threads: int, info) -> int:
        cores = info.data.get("cores")
        if cores is not None and threads > cores:
            raise ValueError(f"threads ({threads}) exceeds cores ({cores})")
        return threads

    @field_validator("sequence_buckets", "batch_buckets")
    @classmethod
    def _buckets_sorted(cls, buckets: tuple[int, ...], info) -> tuple[int, ...]:
        top = 1 << 16 if info.field_name == "batch_buckets" else 1 << 20  # what an artifact's index admits
        if list(buckets) != sorted(set(buckets)) or buckets[0] < 1 or buckets[-1] > top:
            raise ValueError(f"{info.field_name} must be increasing positive sizes up to {top}, found {list(buckets)}")
        return buckets

    @field_validator("isa")
    @classmethod
    def _known_isa(cls, isa: tuple[str, ...], info) -> tuple[str, ...]:
        arch = info.data.get("arch")
        known = X86_ISA if arch is Arch.X86_64 else ARM_ISA if arch is Arch.AARCH64 else None
        unknown = [name for name in isa if known is not None and name not in known]
        if unknown:
            raise ValueError(f"unknown {arch.value} isa names {unknown}; known: {', '.join(known)}")
        return isa

    @field_validator("preferred_backends")
    @classmethod
    def _no_repeats(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(names)) != len(names):
            raise ValueError(f"preferred_backends lists a backend twice: {list(names)}")
        return names

    @model_validator(mode="after")
    def _accelerator_matches_tvm(self) -> TargetProfile:
        if self.tvm_target is None:
            return self
        cuda = self.tvm_target.kind is TvmKind.CUDA
        if cuda != (self.accelerator is Accelerator.CUDA):
            raise ValueError(
                f"tvm_target kind {self.tvm_target.kind.value} does not fit accelerator {self.accelerator.value}"
            )
        triple = self.tvm_target.mtriple
        machine = triple.split("-")[0] if triple else None
        if machine and {"arm64": "aarch64", "amd64": "x86_64"}.get(machine, machine) != self.arch.value:
            # caught here, not by the linker after the build
            raise ValueError(f"tvm_target mtriple {triple!r} is not for the profile's arch {self.arch.value}")
        return self
