"""Typed quantization settings, and the integer types a target profile calls for."""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict

from edgekiln.targets import Arch, TargetProfile


class QuantMode(str, Enum):
    NONE = "none"
    DYNAMIC = "dynamic"  # int8 weights, activations quantized per call: no calibration data needed
    STATIC = "static"  # int8 weights and activations (QDQ), activation ranges from calibration data
    AUTO = "auto"  # try both, keep the fastest that meets the accuracy budget (or float)


class CalibrationMethod(str, Enum):
    MINMAX = "minmax"
    PERCENTILE = "percentile"
    ENTROPY = "entropy"


class IntType(str, Enum):
    INT8 = "int8"
    UINT8 = "uint8"


class QuantizeConfig(BaseModel):
    """One quantization of one model; `exclude` lists nodes kept in float."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    mode: QuantMode
    activation_type: IntType = IntType.UINT8
    weight_type: IntType = IntType.INT8
    reduce_range: bool = False
    per_channel: bool = True
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX
    # Matrix products only: LayerNorm, Softmax and GELU stay in float.
    op_types: tuple[str, ...] = ("MatMul", "Gemm", "Conv")
    exclude: tuple[str, ...] = ()


def types_for_profile(profile: TargetProfile) -> dict:
    """U8S8 on x86 (7-bit weights via reduce_range where the ISA lacks VNNI, avoiding the
    VPMADDUBSW saturation); S8S8 on ARM, whose int8 dot products are signed."""
    if profile.arch is Arch.AARCH64:
        return {"activation_type": IntType.INT8, "weight_type": IntType.INT8, "reduce_range": False}
    vnni = any(flag in profile.isa for flag in ("avx512_vnni", "avx_vnni", "amx_int8"))
    return {"activation_type": IntType.UINT8, "weight_type": IntType.INT8, "reduce_range": not vnni}
