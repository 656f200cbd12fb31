"""The CPUs this process may run on: its affinity (taskset, a container's cpuset), not the machine's count."""

from __future__ import annotations

import os
import platform


def allowed_cpus() -> list[int]:
    """The ids of the CPUs this process may run on (all of the machine's where affinity is unknown)."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def available_cpus() -> int:
    """How many CPUs this process may use: os.cpu_count() counts the machine's, so a process limited to
    one core (taskset, a cpuset, a test worker given its share) would start a thread per machine core
    and spin them against each other."""
    return max(1, len(allowed_cpus()))


def cpu_flags(cpuinfo: str) -> set[str]:
    """The feature flags /proc/cpuinfo lists (x86 `flags`, ARM `Features`)."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def x86_isa() -> set[str] | None:
    """This x86-64 CPU's instruction-set features, named as target profiles name them (`sse4.2`, `avx2`,
    `avx512_vnni`); None on another architecture or where /proc/cpuinfo cannot be read."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = cpu_flags(handle.read())
    except OSError:
        return None
    return profile_isa_names(flags) or None


def profile_isa_names(flags: set[str]) -> set[str]:
    """cpuinfo's x86 flags as target profiles spell them (sse4_2 -> sse4.2; the rest as they are)."""
    return {flag.replace("sse4_", "sse4.") for flag in flags}
