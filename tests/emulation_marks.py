"""The marks of the tests that run aarch64 code under qemu-user in a Debian arm64 sysroot."""

from __future__ import annotations

import os
import shutil

import pytest

MISSING = [tool for tool in ("qemu-aarch64-static", "debootstrap", "aarch64-linux-gnu-gcc") if not shutil.which(tool)]
EMULATION = [
    pytest.mark.emulation,
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"needs {', '.join(MISSING)} (apt-get install qemu-user-static "
        "debootstrap gcc-aarch64-linux-gnu; .ci/run installs them)",
    ),
    pytest.mark.skipif(
        hasattr(os, "geteuid") and os.geteuid() != 0,
        reason="building the arm64 sysroot runs debootstrap, which needs root",
    ),
]
