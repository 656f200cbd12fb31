"""The default CPU schedule of the integer matrix product int8_rewrites emits (block `QMATMUL`).

`acc[m, nb, ni] = sum_{kb, kk} x[m, 4 kb + kk] * W[nb, kb, ni, kk]` (int32) and its fused float
epilogue are tiled into MR rows x NB_TILE blocks of 16 output channels: (channel blocks) run in
parallel, row tiles inside, and the whole reduction runs on an MR x NB_TILE x 16 int32 accumulator.
The innermost (16 channels x 4 steps) is one instruction where the target has one:

- x86 with AVX512-VNNI, uint8 activations: `vpdpbusd` (a tensor intrinsic registered here, see
  `vnni_intrinsic`);
- otherwise (AVX2, AVX-512 without VNNI, ARM, int8 activations) the 16 channels are a vectorised
  int32 loop over the 4 reduction steps. TVM's `dot_16x4_avx512` (vpmaddubsw + vpmaddwd) is not
  used: vpmaddubsw saturates its int16 pair sums (255 * 127 * 2 > 32767), so with full-range int8
  weights it is not exact (the int8 pass uses 7-bit weights, reduce_range, only for targets without
  VNNI, which the schedule cannot see). ARM's sdot intrinsic works on 4 x 4 tiles, another packing:
  not used yet.
"""

from __future__ import annotations

from .int8_rewrites import QMATMUL

MR = 4  # rows of a register tile
NB_TILE = 4  # 16-channel blocks of a register tile (MR x NB_TILE accumulators: 16 of 32 zmm registers)


def schedule_qmatmul(func, target):
    """A Schedule of `func` when it computes `QMATMUL` (with at most one epilogue block), else None."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    try:
        product = sch.get_sblock(QMATMUL)
    except Exception:  # no such block: not the integer product
        return None
    consumers = sch.get_consumers(product)
    if len(consumers) > 1 or len(sch.get_producers(product)) > 0:
        return None
    activation = str(sch.get(product).reads[0].source.dtype)
    rows, blocks, _lanes = (int(sch.get(loop).extent) for loop in sch.get_loops(product)[:3])
    mr, nbt = _divisor(rows, MR), _divisor(blocks, NB_TILE)
    out = consumers[0] if consumers else sch.cache_write(product, 0, "global")
    m, nb, ni = sch.get_loops(out)[-3:]
    m_o, m_i = sch.split(m, factors=[None, mr])
    nb_o, nb_i = sch.split(nb, factors=[None, nbt])
    sch.reorder(nb_o, m_o, m_i, nb_i, ni)
    sch.parallel(nb_o)
    sch.vectorize(ni)
    sch.compute_at(product, m_o, preserve_unit_loops=True)
    *_, p_m, p_nb, p_ni, kb, kk = sch.get_loops(product)
    intrinsic = dot_intrinsic(target, activation)
    if intrinsic is not None:  # kb, then the tile's rows and blocks, then one instruction per (16, 4)
        sch.reorder(kb, p_m, p_nb, p_ni, kk)
    else:  # kb, kk, then the tile, the 16 channels vectorised
        sch.reorder(kb, kk, p_m, p_nb, p_ni)
        sch.unroll(kk)
        sch.vectorize(p_ni)  # before the reduction is split off (TVM refuses it after)
    init = sch.decompose_reduction(product, kb)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(p_m)
    sch.unroll(p_nb)
    if intrinsic is not None:
        sch.tensorize(p_ni, intrinsic)
    return sch


def dot_intrinsic(target, activation_dtype: str) -> str | None:
    """The registered tensor intrinsic for an exact 16 x 4 uint8 x int8 dot product on `target`, or None."""
    from tvm.target.codegen import target_has_features

    if activation_dtype != "uint8" or str(target.attrs.get("mtriple", "") or "").startswith(("aarch64", "arm")):
        return None
    with target:
        if target_has_features("avx512vnni", target):
            return vnni_intrinsic()
    return None


def _divisor(extent: int, wanted: int) -> int:
    """The largest divisor of `extent` not above `wanted`."""
    return next(d for d in range(min(wanted, extent), 0, -1) if extent % d == 0)


VNNI = "edgekiln_dot_16x4_vnni"  # 16 x 4 uint8 x int8 -> int32 dot product on vpdpbusd


def vnni_intrinsic() -> str:
    """The VNNI dot product, registered once. Defined here rather than taken from TVM's
    `tensor_intrin.x86`: importing that package loads every target's intrinsics (30-45 s on the
    development machine, per process), and its `dot_16x4_vnni` declares the LLVM intrinsic with
    <16 x i32> operands, which the LLVM this wheel links (22) rejects: LLVM 21 changed them to
    <64 x i8>. The operand type follows the linked LLVM."""
    from tvm.s_tir import TensorIntrin
    from tvm.target.codegen import llvm_version_major

    try:
        TensorIntrin.get(VNNI)
    except Exception:  # not registered yet (TVM raises a plain error for unknown names)
        operand = "int8x64" if llvm_version_major() >= 21 else "int32x16"
        TensorIntrin.register(VNNI, _dot_16x4_desc(), _vnni_impl(operand))
    return VNNI


def _dot_16x4_desc():
    """C[i] += sum_k A[k] * B[i, k] for 16 outputs and 4 reduction steps, in int32."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((16, 4), "int8", offset_factor=1),
        C: T.Buffer((16,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            for i in T.serial(0, 16):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    return desc


def _vnni_impl(operand: str):
    """One vpdpbusd: the 4 activation bytes broadcast to all 16 lanes, the 16 x 4 weight bytes as
    they lie, operands typed `operand` (LLVM's signature)."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((16, 4), "int8", offset_factor=1),
        C: T.Buffer((16,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            a = T.reinterpret(A.vload([0], "uint8x4"), dtype="int32")
            C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                C.vload([0], dtype="int32x16"),
                T.reinterpret(T.broadcast(a, 16), dtype=operand),
                T.reinterpret(B.vload([0, 0], dtype="int8x64"), dtype=operand),
                dtype="int32x16",
            )

    return impl
