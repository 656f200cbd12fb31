"""The CPUs this process may run on: its affinity (taskset, a container's cpuset), not the machine's count."""

from __future__ import annotations

import os


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
