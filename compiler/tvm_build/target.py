"""The profile's TVM target in TVM 0.27's dict form, and whether it runs on this machine."""

from __future__ import annotations

from edgekiln.runtime.backends.tvm import host_arch
from edgekiln.targets import TargetProfile
from edgekiln.targets.schema import Arch, TvmKind

_TRIPLES = {Arch.X86_64: "x86_64-linux-gnu", Arch.AARCH64: "aarch64-linux-gnu"}
CROSS_COMPILERS = {"aarch64": "aarch64-linux-gnu-gcc"}  # by target arch, from an x86-64 machine


def triple_of(arch: str) -> str:
    """The LLVM triple edgekiln builds for a CPU architecture (platform.machine() spelling)."""
    return _TRIPLES[Arch(arch)]


def target_dict(profile: TargetProfile, *, cores: int | None = None) -> dict:
    spec = profile.tvm_target
    host = _llvm(profile, cores)
    if spec.kind is TvmKind.CUDA:
        cuda = {"kind": "cuda", "host": host}
        if spec.arch:
            cuda["arch"] = spec.arch
        return cuda
    return host


def _llvm(profile: TargetProfile, cores: int | None) -> dict:
    spec = profile.tvm_target
    llvm: dict = {"kind": "llvm", "num-cores": cores or profile.cores}
    if spec.kind is TvmKind.LLVM and spec.mcpu:
        llvm["mcpu"] = _native_cpu() if spec.mcpu == "native" else spec.mcpu
    if spec.kind is TvmKind.LLVM and spec.mattr:
        llvm["mattr"] = list(spec.mattr)
    triple = spec.mtriple if spec.kind is TvmKind.LLVM else None  # a CUDA host is the profile's CPU
    if triple or profile.arch.value != host_arch():
        llvm["mtriple"] = triple or _TRIPLES[profile.arch]
    return llvm


def local_target(profile: TargetProfile) -> dict:
    """The target a compile on this machine builds for `profile` (it keys the tuning database): a
    profile that runs here uses at most this machine's cores."""
    import os

    cores = min(profile.cores, os.cpu_count() or 1) if runs_here(profile) else profile.cores
    return target_dict(profile, cores=cores)


# This machine's CPU: checks a cross-compiled or GPU build's numerics here, before the device does.
HOST_TWIN = {"kind": "llvm"}


def runs_here(profile: TargetProfile) -> bool:
    return profile.arch.value == host_arch() and profile.tvm_target.kind is TvmKind.LLVM


def _native_cpu() -> str:
    from tvm.target import codegen

    return codegen.llvm_get_system_cpu()


def check_cpu_name(profile: TargetProfile) -> None:
    """A profile's mcpu must be a CPU LLVM knows for its triple: LLVM only warns and builds generic code
    (about fifty lines of it), while tvm.json and the manifest would name the CPU asked for."""
    from tvm.target import Target, codegen

    from ..errors import CompileError

    spec = profile.tvm_target
    if spec.kind is not TvmKind.LLVM or spec.mcpu in (None, "native"):
        return
    triple = spec.mtriple or _TRIPLES[profile.arch]
    known = list(codegen.llvm_get_cpu_archlist(Target({"kind": "llvm", "mtriple": triple})))
    if known and spec.mcpu not in known:
        near = [name for name in known if name.startswith(spec.mcpu.split("-")[0])][:6]
        raise CompileError(
            f"target {profile.name}: mcpu {spec.mcpu!r} is not a CPU LLVM knows for {triple}",
            hint=f"use one LLVM names ({', '.join(near) or ', '.join(known[:6])}, ...), or drop mcpu",
        )
