"""`--target host`: a profile for the machine edgekiln runs on, based on the closest shipped one."""

from __future__ import annotations

import platform
import shutil
from pathlib import Path

from edgekiln.runtime.cpus import available_cpus, cpu_flags
from edgekiln.runtime.manifest import Accelerator, Precision

from .schema import Arch, TargetProfile, TvmKind, TvmTarget

_X86_FEATURES = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "amx_bf16",
    "amx_int8",
    "avx_vnni",
    # more that LLVM generates code for with -mcpu=native (the host profile's TVM builds): an artifact
    # built here records them, and does not load on a CPU without them (runtime/backends/tvm.py)
    "sse4_1",
    "ssse3",
    "popcnt",
    "f16c",
    "bmi1",
    "bmi2",
    "movbe",
    "avx512cd",
    "avx512dq",
    "avx512ifma",
    "avx512vbmi",
    "avx512_vbmi2",
    "avx512_bitalg",
    "avx512_vpopcntdq",
    "avx512_fp16",
    "gfni",
    "vaes",
    "vpclmulqdq",
    "amx_tile",
)
_ARM_FEATURES = {"asimd": "neon", "fphp": "fp16", "asimddp": "dotprod", "i8mm": "i8mm", "bf16": "bf16"}


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
        isa = tuple(flag.replace("sse4_", "sse4.") for flag in _X86_FEATURES if flag in flags)
        base = load_profile("x86-64-avx512-vnni" if "avx512_vnni" in flags else "x86-64-avx2")
    else:
        isa = tuple(name for flag, name in _ARM_FEATURES.items() if flag in flags) or ("neon",)
        base = load_profile("arm64-cortex-a76" if "dotprod" in isa else "arm64-cortex-a72")
    cores = available_cpus()
    cuda = shutil.which("nvidia-smi") is not None and Path("/dev/nvidiactl").exists()
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
