"""What the CPU schedules need to know about an LLVM target: its SIMD width and register tiles."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tiles:
    lanes: int  # elements per vector register
    mr: int  # rows of a matmul register tile
    nr: int  # columns of a matmul register tile (two vectors)


def vector_bits(target) -> int:
    """The SIMD width the target's -mcpu/-mattr give: AVX-512 512, AVX/AVX2 256, NEON and SSE 128.
    (TVM's llvm_get_vector_width reports this machine's width for any x86 target, so it is not used.)"""
    from tvm.target.codegen import target_has_features

    triple = str(target.attrs.get("mtriple", "") or "")
    if triple.startswith(("aarch64", "arm64", "arm")):
        return 128
    with target:
        if target_has_features("avx512f", target):
            return 512
        if target_has_features("avx", target):
            return 256
    return 128


def registers(target) -> int:
    """Vector registers: 32 on AArch64 and with AVX-512, 16 on x86 otherwise."""
    return 32 if vector_bits(target) == 512 or _is_arm(target) else 16


def tiles_for(target, dtype_bits: int) -> Tiles | None:
    """Register tiles for a matmul with `dtype_bits` elements: NR = two vectors, MR rows so that the
    MR x 2 accumulators leave registers for the loaded vectors (16 of 32, 8 of 16)."""
    if dtype_bits not in (16, 32, 64):
        return None
    lanes = vector_bits(target) // dtype_bits
    accumulators = registers(target) // 2
    return Tiles(lanes=lanes, mr=accumulators // 2, nr=2 * lanes)


def _is_arm(target) -> bool:
    return str(target.attrs.get("mtriple", "") or "").startswith(("aarch64", "arm64", "arm"))
