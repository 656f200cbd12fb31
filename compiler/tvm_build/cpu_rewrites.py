"""Relax rewrites that make CPU kernels schedulable (before legalization, so tuning sees them too).

- `matmul(x, permute_dims(w))` with 2-D operands (every ONNX Gemm/MatMul of a transposed weight)
  becomes one dense kernel that reads `w` as stored: no per-inference transpose of the weight, which
  on MiniLM cost more than the matmuls themselves. The matmul schedule packs `w` panel by panel.
- float32 `erf`, `exp` and `softmax` use TVM's fast approximations (topi.fast_erf/fast_exp: Eigen's
  and Cephes' polynomials, relative error about 1e-7, which vectorise), instead of one libm call
  per element, which LLVM cannot vectorise.
"""

from __future__ import annotations


def prepare_passes(target: dict) -> list:
    """The Relax passes before legalization, shared by builds and tuning so that the kernels tuning
    records are the ones builds look up: inference decompositions, then (CPU only) the rewrites."""
    from tvm.relax import transform

    from .int8_rewrites import int8_rewrites

    cpu = [int8_rewrites(), cpu_rewrites()] if target["kind"] == "llvm" else []
    return [transform.DecomposeOpsForInference(), transform.CanonicalizeBindings(), *cpu]


def cpu_rewrites():
    """The rewrite pass (a Relax module pass), followed by dead-code removal of the transposes."""
    return mutator_pass(_rewriter(), "EdgekilnCpuRewrites")


def mutator_pass(rewriter_class, name: str):
    """A module pass running `rewriter_class` (a relax.PyExprMutator) over every Relax function,
    followed by dead-code removal of the bindings it replaced."""
    import tvm
    from tvm import relax

    @tvm.transform.module_pass(opt_level=0, name=name)
    def rewrite(mod, _ctx):
        rewriter = rewriter_class(mod)
        for gvar, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rewriter.builder_.update_func(gvar, rewriter.visit_expr(func))
        return rewriter.builder_.get()

    return tvm.transform.Sequential([rewrite, relax.transform.DeadCodeElimination()])


def _rewriter():
    from tvm import relax, topi
    from tvm.relax import expr_functor

    @expr_functor.mutator
    class Rewriter(relax.PyExprMutator):
        def visit_call_(self, original):
            call = super().visit_call_(original)
            name = getattr(call.op, "name", None)
            if name == "relax.matmul":
                dense = self._dense(call)
                return dense if dense is not None else call
            if not _is_float32(original):
                return call
            if name == "relax.erf":
                return self.builder_.call_te(topi.fast_erf, call.args[0])
            if name == "relax.exp":
                return self.builder_.call_te(topi.fast_exp, call.args[0])
            if name == "relax.nn.softmax":
                return self.builder_.call_te(topi.nn.fast_softmax, call.args[0], int(call.attrs.axis))
            return call

        def _dense(self, call):
            x, wt = call.args
            if not isinstance(wt, relax.Var):
                return None
            bound = self.lookup_binding(wt)
            if (
                not _is_transpose_2d(bound)
                or _ndim(x) != 2
                or str(call.attrs.out_dtype) not in ("None", "", "void", x.ty.dtype)
            ):
                return None
            return self.builder_.call_te(topi.nn.dense, x, bound.args[0], primfunc_name_hint="dense")

    return Rewriter


def _is_transpose_2d(expr) -> bool:
    from tvm import relax

    if not isinstance(expr, relax.Call) or getattr(expr.op, "name", None) != "relax.permute_dims":
        return False
    axes = expr.attrs.axes
    return _ndim(expr.args[0]) == 2 and (axes is None or [int(a) for a in axes] == [1, 0])


def _ndim(expr) -> int:
    info = expr.ty
    return int(getattr(info, "ndim", -1))


def _is_float32(call) -> bool:
    info = call.ty
    return getattr(info, "dtype", None) == "float32"
