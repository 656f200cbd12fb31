"""Default schedules for CPU (LLVM) kernels that no tuning database scheduled.

Without them TVM lowers every kernel as written: single-threaded scalar loops. Each unscheduled
kernel gets the first rule that applies: matrix products (cpu_matmul), dlight's CPU GEMV and
softmax/layernorm reductions, then a fallback that runs injective kernels and plain reductions
with a parallel outer loop and a vectorised inner one. A rule that does not apply, or fails, leaves
the kernel on TVM's default lowering. Scheduled kernels carry `SCHEDULE_ATTR` (the rule's name).
"""

from __future__ import annotations

from .cpu_matmul import schedule_matmul
from .cpu_target import vector_bits
from .int8_schedules import schedule_qmatmul

SCHEDULE_ATTR = "edgekiln.cpu_schedule"
MIN_PARALLEL = 4096  # elements: smaller loops run on one thread (a parallel launch costs microseconds)


def default_schedules(mod, target):
    """A copy of `mod` with every unscheduled PrimFunc scheduled by the first rule that applies."""
    import tvm

    mod, ordered = mod.clone(), rules()
    updated = {}
    for gvar, func in mod.functions_items():
        if not isinstance(func, tvm.tirx.PrimFunc) or _is_scheduled(func):
            continue
        found = first_schedule(func, target, ordered)
        if found is not None:
            name, sch = found
            updated[gvar] = sch.mod["main"].with_attr("tirx.is_scheduled", True).with_attr(SCHEDULE_ATTR, name)
    for gvar, func in updated.items():
        mod[gvar] = func
    return mod


def first_schedule(func, target, ordered: tuple | None = None):
    """(rule name, schedule) from the first default rule that applies to `func`, or None."""
    for name, rule in ordered or rules():
        sch = try_rule(rule, func, target)
        if sch is not None:
            return name, sch
    return None


def scheduled_by(mod) -> dict[str, str]:
    """Kernel name -> the default rule that scheduled it."""
    import tvm

    return {
        gvar.name_hint: str(func.attrs[SCHEDULE_ATTR])
        for gvar, func in mod.functions_items()
        if isinstance(func, tvm.tirx.PrimFunc) and func.attrs and SCHEDULE_ATTR in func.attrs
    }


def rules() -> tuple:
    """(name, dlight ScheduleRule) in the order they are tried; also usable with dlight's
    ApplyDefaultSchedule."""
    from tvm.s_tir import dlight as dl
    from tvm.s_tir.dlight.base import ScheduleRule

    return (
        (
            "int8_matmul",
            ScheduleRule.from_callable("EdgekilnInt8Matmul")(lambda func, target, _: schedule_qmatmul(func, target)),
        ),
        ("matmul", ScheduleRule.from_callable("EdgekilnMatmul")(lambda func, target, _: schedule_matmul(func, target))),
        ("gemv", dl.cpu.GEMV()),
        ("reduction", dl.cpu.Reduction()),
        (
            "fallback",
            ScheduleRule.from_callable("EdgekilnFallback")(lambda func, target, _: schedule_fallback(func, target)),
        ),
    )


def try_rule(rule, func, target):
    """The rule's schedule, or None where it does not apply or fails (the kernel stays unscheduled)."""
    from tvm import s_tir

    try:
        sch = rule.apply(func, target, False)
    except Exception:  # a rule that cannot handle a kernel raises TVM's ScheduleError and others
        return None
    return sch if isinstance(sch, s_tir.Schedule) else None


def _is_scheduled(func) -> bool:
    return bool(func.attrs and func.attrs.get("tirx.is_scheduled"))


def schedule_fallback(func, target):
    """Inline what can be inlined, then give each remaining block a parallel outer loop (its spatial
    axes fused) and, for injective blocks, a vectorised inner loop."""
    from tvm import s_tir
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.base import try_inline

    sch = s_tir.Schedule(func)
    infos = normalize_prim_func(sch)
    if not infos:
        return None
    infos = try_inline(sch, infos)
    lanes = vector_bits(target) // 32
    for info in infos:
        kind = info.dom_kind()
        spatial = len(kind) - len(kind.lstrip("S"))
        if spatial == 0 or (spatial < len(kind) and set(kind[spatial:]) != {"R"}):
            return None
        _parallel_vector(sch, info.block_rv, spatial, lanes if spatial == len(kind) else 0)
    return sch


def _parallel_vector(sch, block, spatial: int, lanes: int) -> None:
    """Vectorise the innermost spatial loop by `lanes` (0: not at all) where it divides, and run the
    other spatial loops, fused, in parallel when there is enough work."""
    loops = sch.get_loops(block)
    reduces = len(loops) > spatial
    outer, inner = list(loops[: spatial - 1]), loops[spatial - 1]
    extents = [_int(sch.get(loop).extent) for loop in loops[:spatial]]
    if not all(isinstance(e, int) for e in extents):
        return
    if lanes and extents[-1] % lanes == 0:
        rest, vec = sch.split(inner, factors=[None, lanes])
        sch.vectorize(vec)
        outer.append(rest)
    else:
        outer.append(inner)
    work = 1
    for extent in extents:
        work *= extent
    if work >= MIN_PARALLEL or (reduces and work >= 16):
        sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])


def _int(expr):
    from tvm import tirx

    return int(expr) if isinstance(expr, (int, tirx.IntImm)) else expr
