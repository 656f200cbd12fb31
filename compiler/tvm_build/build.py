"""Relax module -> executable -> shared library, for the CPU (LLVM) or CUDA, native or cross."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from edgekiln.runtime.backends.tvm import host_arch

from ..errors import CompileError
from .cpu_rewrites import prepare_passes
from .cpu_schedules import default_schedules, scheduled_by, try_rule
from .target import CROSS_COMPILERS

_log = logging.getLogger(__name__)

CROSS_PACKAGES = "gcc-aarch64-linux-gnu libc6-dev-arm64-cross"  # the compiler and the target's C library


def build(
    mod,
    target: dict,
    *,
    tuned_database: Path | None = None,
    applied: list[int] | None = None,
    defaults: dict[str, int] | None = None,
):
    """Compile `mod` for `target`: GPU kernels get dlight's default schedules; CPU kernels the records
    of a MetaSchedule database when one is given, and edgekiln's default CPU schedules
    (cpu_schedules) for the rest. `applied` ([scheduled, kernels]) counts the kernels the database
    scheduled; `defaults` (rule name -> kernels) gains the kernels each default rule scheduled.
    Should a default schedule not compile, the build is retried without them."""
    import tvm
    from tvm import relax

    tvm_target = tvm.target.Target(target)
    if target["kind"] == "cuda":
        return _relax_build(_gpu_schedules(mod, tvm_target), tvm_target, target)
    mod = cpu_lowered(mod, tvm_target, target, tuned_database)
    if applied is not None and tuned_database is not None:
        kernels = [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
        applied[0] += sum(bool(f.attrs and f.attrs.get("tirx.is_scheduled")) for f in kernels)
        applied[1] += len(kernels)
    with tvm_target:
        scheduled = default_schedules(mod, tvm_target)
    try:
        executable = relax.build(scheduled, target=tvm_target)
    except Exception as exc:  # a default schedule TVM cannot compile: build the kernels as they were
        _log.warning("TVM could not compile edgekiln's default CPU schedules (%s); building without them", exc)
        return _relax_build(mod, tvm_target, target)
    if defaults is not None:
        for rule in scheduled_by(scheduled).values():
            defaults[rule] = defaults.get(rule, 0) + 1
    return executable


def _relax_build(mod, tvm_target, target: dict):
    from tvm import relax

    try:
        return relax.build(mod, target=tvm_target)
    except Exception as exc:  # TVM's errors: name the target and the first line
        raise CompileError(f"TVM could not build for {target}: {_first_line(exc)}", hint=_build_hint(target)) from None


def export(executable, path: Path, arch: str) -> None:
    """Write the shared library, linking with the cross compiler for `arch` when it is not this machine's."""
    from tvm.support import cc

    options = {}
    if arch != host_arch():
        compiler = CROSS_COMPILERS.get(arch)
        if compiler is None:
            raise CompileError(
                f"edgekiln knows no cross compiler for {arch} on {host_arch()}", hint=f"compile on a {arch} machine"
            )
        if shutil.which(compiler) is None:
            raise CompileError(
                f"cross-compiling for {arch} needs {compiler}, which is not installed",
                hint=f"apt-get install {CROSS_PACKAGES} (Debian/Ubuntu)",
            )
        options["fcompile"] = cc.cross_compiler(compiler)
    try:
        executable.export_library(str(path), **options)
    except Exception as exc:
        cause = link_cause(str(exc))
        raise CompileError(f"linking the TVM library for {arch} failed: {cause}", hint=_link_hint(cause)) from None


def _gpu_schedules(mod, tvm_target):
    """dlight's default GPU schedules, each rule tried in turn. A rule that raises on a kernel counts as
    not applying to it (dlight would abort the build: its GEMV rule asserts on one of MobileViT's
    kernels), so the next rule, at last the fallback, schedules it."""
    import tvm
    from tvm import relax
    from tvm.s_tir import dlight as dl
    from tvm.s_tir.dlight.base import ScheduleRule

    rules = (dl.gpu.Matmul(), dl.gpu.GEMV(), dl.gpu.Reduction(), dl.gpu.GeneralReduction(), dl.gpu.Fallback())
    tolerant = [
        ScheduleRule.from_callable(f"Edgekiln{type(rule).__name__}")(
            lambda func, target, _, rule=rule: try_rule(rule, func, target)
        )
        for rule in rules
    ]
    try:
        with tvm_target:
            return tvm.transform.Sequential([relax.get_pipeline("zero"), dl.ApplyDefaultSchedule(*tolerant)])(mod)
    except Exception as exc:  # TVM's lowering before the schedules
        raise CompileError(
            f"TVM could not lower the model for {tvm_target.kind.name}: {_first_line(exc)}",
            hint="use --backend onnxruntime for this model, and report it",
        ) from None


def cpu_lowered(mod, tvm_target, target: dict, database: Path | None):
    """Legalized and fused, with the database's schedules applied (when there is one)."""
    import tvm
    from tvm import relax
    from tvm.relax import transform

    with tvm_target, tvm.transform.PassContext(opt_level=3):  # the database pass reads the target when made
        applied = [transform.MetaScheduleApplyDatabase(str(database))] if database is not None else []
        return tvm.transform.Sequential([*prepare_passes(target), relax.get_pipeline("zero"), *applied])(mod)


def _build_hint(target: dict) -> str:
    if target["kind"] == "cuda" and shutil.which("nvcc") is None:
        return "building CUDA kernels needs nvcc (the CUDA toolkit) on this machine"
    return "use --backend onnxruntime for this model, and report it"


def link_cause(message: str) -> str:
    """The cause in a failed link's message (TVM's is a header, the compiler's output, then the whole
    command line): the first line that says error (not collect2's closing summary) or names what
    the linker could not find, else the output's last line."""
    lines = [
        line.strip()
        for line in message.splitlines()
        if line.strip()
        and not line.startswith("Command line:")
        and line.strip() not in ("Compilation error:", "AR error:")
    ]
    for line in lines:
        lowered = line.lower()
        if "ld returned" in lowered and "exit status" in lowered:
            continue
        if "error" in lowered or "cannot find" in lowered or "undefined reference" in lowered:
            return line
    return lines[-1] if lines else "no output from the compiler"


def _link_hint(cause: str) -> str | None:
    if "crti.o" in cause or "cannot find -lc" in cause:
        return f"the cross compiler has no C library for the target: apt-get install {CROSS_PACKAGES}"
    return None


def _first_line(exc: Exception) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(exc).__name__
