"""Relax rewrite of a QDQ int8 matrix product into an integer one (CPU targets).

TVM 0.27's ONNX importer turns each quantized MatMul of the int8 pass's QDQ model into
`matmul(dequantize(xq, sx, zx), dequantize(wq, sw, zw, axis=1))`: a float matmul between float
copies of the integers. This rewrite computes the same value with integers:

    acc[m, n] = sum_k xq[m, k] * wq[k, n]                          (int32, exact)
    y[m, n]   = (acc - zx * colsum(wq)[n] - zw[n] * rowsum(xq)[m] + K * zx * zw[n]) * sx * sw[n]

which is `sum_k (xq - zx) * (wq - zw) * sx * sw`, the float product of the dequantized operands up
to float rounding. `xq` is the uint8/int8 activation (per-tensor scale and zero point), `wq` the
int8 weight (per-channel or per-tensor scale along the output axis). The weight is repacked to
`[N/16, K/4, 16, 4]` (16 output channels x 4 reduction steps per block: the operand layout of the
x86 VNNI and ARM dot-product instructions) by a kernel that reads only the weight; the product
kernel is `QMATMUL` (int8_schedules schedules it). Products whose K is not a multiple of 4 or N of
16, and activation x activation products, stay in float.
"""

from __future__ import annotations

QMATMUL = "qmatmul_int8"  # the integer product's compute (block) name
LANES, GROUP = 16, 4  # output channels x reduction steps of one packed weight block


def int8_rewrites():
    """The rewrite pass (a Relax module pass), then dead-code removal of the float dequantizes."""
    from .cpu_rewrites import mutator_pass

    return mutator_pass(_rewriter(), "EdgekilnInt8Matmul")


def _rewriter():
    from tvm import relax
    from tvm.relax import expr_functor

    @expr_functor.mutator
    class Rewriter(relax.PyExprMutator):
        def visit_call_(self, original):
            call = super().visit_call_(original)
            if getattr(call.op, "name", None) != "relax.matmul":
                return call
            operands = _match(self, call)
            return _integer_matmul(self.builder_, *operands) if operands is not None else call

    return Rewriter


def _match(mutator, call):
    """(activation dequantize, weight dequantize, weight is [N, K]) when `call` is a product of a
    quantized activation and a quantized 2-D int8 weight in the supported shapes, else None."""
    if str(call.attrs.out_dtype) not in ("None", "", "void", "float32"):
        return None
    x, w = (_bound(mutator, arg) for arg in call.args)
    transposed = _is_call(w, "relax.permute_dims") and _ndim(w.args[0]) == 2
    if transposed:
        axes = w.attrs.axes
        if axes is not None and [int(a) for a in axes] != [1, 0]:
            return None
        w = _bound(mutator, w.args[0])
    if not (_is_dequantize(x) and _is_dequantize(w)):
        return None
    xq, sx, zx = x.args
    wq, sw, zw = w.args
    if _dtype(xq) not in ("uint8", "int8") or _dtype(wq) != "int8" or _ndim(wq) != 2 or _ndim(xq) < 2:
        return None
    if _ndim(sx) != 0 or _ndim(zx) != 0 or _dtype(sx) != "float32" or _dtype(sw) != "float32":
        return None
    shape = _static_shape(wq)
    if shape is None:
        return None
    k, n = (shape[1], shape[0]) if transposed else shape
    channel_axis = 0 if transposed else 1
    if _ndim(sw) == 1 and int(w.attrs.axis) != channel_axis:
        return None
    if any(_ndim(v) > 1 or (_ndim(v) == 1 and _static_shape(v) != [n]) for v in (sw, zw)):
        return None
    if k % GROUP or n % LANES or _static_shape(xq) is None or _static_shape(xq)[-1] != k:
        return None
    return x, w, transposed


def _integer_matmul(bb, x, w, transposed: bool):
    from tvm import relax

    xq, sx, zx = x.args
    wq, sw, zw = w.args
    shape = _static_shape(xq)
    rows, k = _product(shape[:-1]), shape[-1]
    n = _static_shape(wq)[0 if transposed else 1]
    blocks = n // LANES
    x2 = bb.normalize(relax.op.reshape(xq, [rows, k]))
    packed = bb.emit(bb.call_te(_pack, wq, transposed, primfunc_name_hint="qweight_pack"))
    acc = bb.emit(bb.call_te(_qmatmul, x2, packed, primfunc_name_hint=QMATMUL))
    colsum = bb.emit(bb.call_te(_colsum, packed, primfunc_name_hint="qweight_colsum"))
    rowsum = bb.emit(bb.call_te(_rowsum, x2, primfunc_name_hint="qactivation_rowsum"))
    sw2, zw2 = (_per_channel(bb, v, blocks) for v in (sw, zw))
    y = bb.emit(
        bb.call_te(_dequantize, acc, rowsum, colsum, sx, zx, sw2, zw2, k, primfunc_name_hint="qmatmul_dequantize")
    )
    return relax.op.reshape(y, [*shape[:-1], n])


def _pack(wq, transposed: bool):
    """[K, N] (or [N, K]) int8 -> [N/16, K/4, 16, 4]."""
    from tvm import te

    n = (wq.shape[0] if transposed else wq.shape[1]) // LANES
    k = (wq.shape[1] if transposed else wq.shape[0]) // GROUP

    def element(nb, kb, ni, kk):
        row, col = kb * GROUP + kk, nb * LANES + ni
        return wq[col, row] if transposed else wq[row, col]

    return te.compute((n, k, LANES, GROUP), element, name="qweight_pack")


def _qmatmul(x, packed):
    """acc[m, nb, ni] = sum_k int32(x[m, k]) * int32(W[k, nb * 16 + ni]) on the packed weight."""
    from tvm import te

    rows, (blocks, steps) = x.shape[0], packed.shape[:2]
    kb = te.reduce_axis((0, steps), name="kb")
    kk = te.reduce_axis((0, GROUP), name="kk")
    return te.compute(
        (rows, blocks, LANES),
        lambda m, nb, ni: te.sum(
            x[m, kb * GROUP + kk].astype("int32") * packed[nb, kb, ni, kk].astype("int32"), axis=[kb, kk]
        ),
        name=QMATMUL,
    )


def _colsum(packed):
    from tvm import te

    kb = te.reduce_axis((0, packed.shape[1]), name="kb")
    kk = te.reduce_axis((0, GROUP), name="kk")
    return te.compute(
        (packed.shape[0], LANES),
        lambda nb, ni: te.sum(packed[nb, kb, ni, kk].astype("int32"), axis=[kb, kk]),
        name="qweight_colsum",
    )


def _rowsum(x):
    from tvm import te

    k = te.reduce_axis((0, x.shape[1]), name="k")
    return te.compute((x.shape[0],), lambda m: te.sum(x[m, k].astype("int32"), axis=k), name="qactivation_rowsum")


def _dequantize(acc, rowsum, colsum, sx, zx, sw, zw, k: int):
    """(acc - zx * colsum - zw * rowsum + K * zx * zw) * sx * sw, in int32 then one float multiply."""
    from tvm import te

    def at(v, nb, ni):
        return v[nb, ni] if len(v.shape) == 2 else v()

    def element(m, nb, ni):
        zxi, zwi = zx().astype("int32"), at(zw, nb, ni).astype("int32")
        total = acc[m, nb, ni] - zxi * colsum[nb, ni] - zwi * rowsum[m] + k * zxi * zwi
        return total.astype("float32") * (sx() * at(sw, nb, ni))

    return te.compute(acc.shape, element, name="qmatmul_dequantize")


def _per_channel(bb, value, blocks: int):
    """A per-channel vector [N] as [N/16, 16] (a per-tensor scalar stays a scalar)."""
    from tvm import relax

    return bb.normalize(relax.op.reshape(value, [blocks, LANES])) if _ndim(value) == 1 else value


def _bound(mutator, expr):
    from tvm import relax

    if isinstance(expr, relax.Var):
        bound = mutator.lookup_binding(expr)
        return bound if bound is not None else expr
    return expr


def _is_call(expr, name: str) -> bool:
    from tvm import relax

    return isinstance(expr, relax.Call) and getattr(expr.op, "name", None) == name


def _is_dequantize(expr) -> bool:
    return _is_call(expr, "relax.dequantize") and _dtype(expr) == "float32"


def _ndim(expr) -> int:
    return int(getattr(expr.ty, "ndim", -1))


def _dtype(expr) -> str | None:
    dtype = getattr(expr.ty, "dtype", None)
    return str(dtype) if dtype is not None else None


def _static_shape(expr) -> list[int] | None:
    shape = getattr(expr.ty, "shape", None)
    if shape is None:
        return None
    try:
        return [int(d) for d in shape]
    except (TypeError, ValueError):
        return None


def _product(dims: list[int]) -> int:
    total = 1
    for d in dims:
        total *= d
    return total
