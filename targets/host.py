"""`--target host`: a profile for the machine edgekiln runs on, based on the closest shipped one."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

from edgekiln.runtime.cpus import available_cpus, cpu_flags, profile_isa_names
from edgekiln.runtime.manifest import Accelerator, Precision

from .schema import X86_ISA, Arch, TargetProfile, TvmKind, TvmTarget

_ARM_FEATURES = {"asimd": "neon", "fphp": "fp16", "asimddp": "dotprod", "i8mm": "i8mm", "bf16": "bf16"}


def cuda_here() -> bool:
    """Whether this machine has an NVIDIA GPU and its driver."""
    return shutil.which("nvidia-smi") is not None and Path("/dev/nvidiactl").exists()


def detect_host() -> TargetProfile:
    from .registry import ProfileError, load_profile

    machine = platform.machine().lower()
    arch = {"x86_64": Arch.X86_64, "amd64": Arch.X86_64, "aarch64": Arch.AARCH64, "arm64": Arch.AARCH64}.get(machine)
    if arch is None:
        raise ProfileError(
            f"cannot detect a target for this machine's architecture {machine!r}",
            hint="pass --target with a profile name or a .toml profile file",
        )
    try:
        flags = cpu_flags(Path("/proc/cpuinfo").read_text())
    except OSError:
        flags = set()
    if arch is Arch.X86_64:
        named = profile_isa_names(flags)
        isa = tuple(name for name in X86_ISA if name in named)
        base = load_profile("x86-64-avx512-vnni" if "avx512_vnni" in flags else "x86-64-avx2")
    else:
        isa = tuple(name for flag, name in _ARM_FEATURES.items() if flag in flags) or ("neon",)
        base = load_profile("arm64-cortex-a76" if "dotprod" in isa else "arm64-cortex-a72")
    cores = available_cpus()
    cuda = cuda_here()
    precisions = base.precisions
    if arch is Arch.X86_64 and {"avx512_bf16", "amx_bf16"} & flags and Precision.BF16 not in precisions:
        precisions = (*precisions, Precision.BF16)
    return base.model_copy(
        update={
            "precisions": precisions,
            "name": "host",
            "description": f"this machine ({machine}, {cores} cores), based on {base.name}",
            "isa": isa,
            "cores": cores,
            "threads": cores,
            "accelerator": Accelerator.CUDA if cuda else Accelerator.NONE,
            "tvm_target": TvmTarget(kind=TvmKind.CUDA) if cuda else TvmTarget(kind=TvmKind.LLVM, mcpu="native"),
        }
    )
