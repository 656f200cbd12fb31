"""A default CPU schedule for matrix products (dense, matmul, batch matmul) and their fused epilogues.

The kernel `C[..., i, j] = sum_k A[..., i, k] * B[..., k, j]` (then a bias add, a mask add, ...) is
tiled into register blocks of MR rows x NR columns: NR is two vector registers, so the innermost
spatial axis j is vectorised, and MR rows share each loaded B vector. The epilogue block's loops
are the tile loops: (batch, j-panel) are fused and run in parallel, the i-tiles run inside, and the
product is computed at the i-tile into an MR x NR accumulator that LLVM keeps in registers. The
whole reduction runs inside the tile (a B panel of K x NR stays in the L2 cache across the i-tiles).
Sizes that do not divide the tiles get guarded partial tiles.
"""

from __future__ import annotations

from dataclasses import dataclass

from .cpu_target import Tiles, tiles_for

UNROLL_K = 4  # reduction steps LLVM unrolls in the inner loop


@dataclass
class _Kernel:
    product: object  # SBlockRV of the reduction
    epilogue: object | None  # SBlockRV of the last injective block (bias add), or None
    spatial: int  # spatial axes of the product (batch axes + i + j)


def schedule_matmul(func, target):
    """A Schedule of `func` when it is a matrix product with an optional injective epilogue, else None."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    kernel = _match(sch)
    if kernel is None:
        return None
    tiles = tiles_for(target, _dtype_bits(sch, kernel.product))
    if tiles is None:
        return None
    out = kernel.epilogue if kernel.epilogue is not None else sch.cache_write(kernel.product, 0, "global")
    sch.set_scope(kernel.product, 0, "local")
    panel, i_tile = _tile_output(sch, out, kernel.spatial, tiles)
    sch.compute_at(kernel.product, i_tile, preserve_unit_loops=True)
    _micro_kernel(sch, kernel.product, tiles)
    _pack_transposed(sch, kernel.product, panel)
    return sch


def _match(sch) -> _Kernel | None:
    """The product and its epilogue: exactly one reduction block, iterators S..SR (at least i and j
    spatial, one reduction, static extents), producers inlined, at most one injective block after it."""
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.base import try_inline_contiguous_spatial

    infos = try_inline_contiguous_spatial(sch, normalize_prim_func(sch))
    if not infos:
        return None
    reductions = [n for n, info in enumerate(infos) if not info.is_injective()]
    if len(reductions) != 1 or reductions[0] != 0 or len(infos) > 2:
        return None
    product = infos[0]
    kind = product.dom_kind()
    if len(kind) < 3 or kind[-1] != "R" or set(kind[:-1]) != {"S"}:
        return None
    if not all(isinstance(_int(d), int) for d in product.dom()):
        return None
    epilogue = infos[1] if len(infos) == 2 else None
    if epilogue is not None and [_int(d) for d in epilogue.dom()] != [_int(d) for d in product.dom()[:-1]]:
        return None
    if not _j_is_innermost(sch, product):
        return None
    return _Kernel(product.block_rv, epilogue.block_rv if epilogue else None, len(kind) - 1)


def _j_is_innermost(sch, info) -> bool:
    """The last spatial iterator indexes the output's innermost axis, and the reduction iterator is
    not in it (a matrix product, not a reduction over the inner axis)."""
    block = sch.get(info.block_rv)
    j, k = info.iters[-2].var, info.iters[-1].var
    written = block.writes[0].region
    if not written or not _uses(written[-1].min, j):
        return False
    return not any(_uses(r.min, k) for r in written)


def _uses(expr, var) -> bool:
    from tvm.s_tir.dlight.analysis.common_analysis import collect_vars_used_in_prim_expr

    return any(used.same_as(var) for used in collect_vars_used_in_prim_expr(expr))


def _tile_output(sch, block, spatial: int, tiles: Tiles):
    """Tile the output block's loops: parallel (batch..., j-panels), then i-tiles; returns the i-tile loop."""
    loops = sch.get_loops(block)[-spatial:]
    *batch, i, j = loops
    i_out, i_in = sch.split(i, factors=[None, tiles.mr])
    j_out, j_in = sch.split(j, factors=[None, tiles.nr])
    sch.reorder(*batch, j_out, i_out, i_in, j_in)
    panel = sch.fuse(*batch, j_out) if batch else j_out
    sch.parallel(panel)
    _vectorize(sch, j_in, tiles.lanes)
    return panel, i_out


def _micro_kernel(sch, block, tiles: Tiles) -> None:
    """Inside the i-tile: k outer (unrolled by UNROLL_K), MR rows unrolled, NR columns vectorised."""
    *_, i, j, k = sch.get_loops(block)
    k_out, k_in = sch.split(k, factors=[None, UNROLL_K])
    sch.reorder(k_out, k_in, i, j)
    _vectorize(sch, j, tiles.lanes)
    sch.unroll(i)
    sch.unroll(k_in)
    init = sch.decompose_reduction(block, k_out)
    *_, init_j = sch.get_loops(init)
    _vectorize(sch, init_j, tiles.lanes)


def _pack_transposed(sch, block, panel) -> None:
    """A 2-D operand read as B[j, k] (a dense layer's weight as stored) is copied, one panel of NR
    rows per parallel iteration, into a K x NR buffer the micro-kernel reads with vector loads."""
    stmt = sch.get(block)
    j, k = stmt.iter_vars[-2].var, stmt.iter_vars[-1].var
    for index, region in enumerate(stmt.reads):
        dims = region.region
        if len(dims) == 2 and _uses(dims[0].min, j) and _uses(dims[1].min, k):
            packed = sch.cache_read(block, index, "global")
            sch.transform_layout(block, ("read", index), lambda a, b: (b, a))
            sch.compute_at(packed, panel, preserve_unit_loops=True)
            return


def _vectorize(sch, loop, lanes: int) -> None:
    """Vectorise `loop` in chunks of `lanes` (the chunks unrolled)."""
    extent = _int(sch.get(loop).extent)
    if not isinstance(extent, int) or extent <= lanes:
        sch.vectorize(loop)
        return
    outer, inner = sch.split(loop, factors=[None, lanes])
    sch.unroll(outer)
    sch.vectorize(inner)


def _dtype_bits(sch, block) -> int:
    return sch.get(block).writes[0].source.dtype.bits


def _int(expr):
    from tvm import tirx

    return int(expr) if isinstance(expr, (int, tirx.IntImm)) else expr
