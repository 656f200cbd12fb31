"""Typed schema of a target profile. Profiles are TOML files in `profiles/`; unknown keys are errors."""
from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, field_validator

from edgekiln.runtime.manifest import Accelerator, Backend, Precision


class Arch(str, Enum):
    X86_64 = "x86_64"
    AARCH64 = "aarch64"


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
    preferred_backends: tuple[Backend, ...] = Field(min_length=1)
    tvm_target: str = Field(description="TVM target string for this device")
    sequence_buckets: tuple[int, ...] = Field(default=(32, 64, 128), min_length=1)

    @field_validator("threads")
    @classmethod
    def _threads_within_cores(cls, threads: int, info) -> int:
        cores = info.data.get("cores")
        if cores is not None and threads > cores:
            raise ValueError(f"threads ({threads}) exceeds cores ({cores})")
        return threads

    @field_validator("sequence_buckets")
    @classmethod
    def _buckets_sorted(cls, buckets: tuple[int, ...]) -> tuple[int, ...]:
        if list(buckets) != sorted(set(buckets)) or buckets[0] < 1:
            raise ValueError(f"sequence_buckets must be increasing positive lengths, found {list(buckets)}")
        return buckets
