"""`edgekiln verify ARTIFACT --emulate`: run the artifact's stored reference check on an emulated
aarch64 machine (qemu-user with the cached Debian sysroot) and return the runtime's report."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import edgekiln.runtime
from edgekiln.runtime.artifact import read_manifest

from ..errors import CompileError
from .sysroot import PYTHON, check_backend, ensure_site, ensure_sysroot

QEMU = ("qemu-aarch64-static", "qemu-aarch64")
TIMEOUT_S = 3600


def qemu_binary() -> str | None:
    return next((found for name in QEMU if (found := shutil.which(name))), None)


def verify_emulated(artifact: Path, cache_root: Path, say: Callable[[str], None] = lambda m: None) -> dict:
    artifact = artifact.resolve()
    manifest = read_manifest(artifact)
    if manifest.target.arch != "aarch64":
        raise CompileError(
            f"--emulate runs aarch64 artifacts; this one targets {manifest.target.arch}",
            hint="run `edgekiln verify ARTIFACT` without --emulate on a machine of that kind",
        )
    if manifest.target.accelerator.value != "none":
        raise CompileError(
            f"--emulate runs the CPU only, and this artifact runs on {manifest.target.name}'s "
            f"{manifest.target.accelerator.value} accelerator",
            hint="run `edgekiln verify ARTIFACT` on the device",
        )
    qemu = qemu_binary()
    if qemu is None:
        raise CompileError("--emulate needs qemu-user", hint="apt-get install qemu-user-static")
    check_backend(manifest.backend)
    sysroot = ensure_sysroot(cache_root, say)
    site = ensure_site(cache_root, manifest.backend, say)
    with tempfile.TemporaryDirectory(prefix="edgekiln-emulate-") as scratch:
        package = Path(scratch) / "edgekiln" / "runtime"
        shutil.copytree(Path(edgekiln.runtime.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
        command = [
            qemu,
            "-L",
            str(sysroot),
            "-E",
            f"PYTHONPATH={scratch}:{site}",
            "-E",
            "TVM_USE_RUNTIME_LIB=1",
            "-E",
            "PYTHONDONTWRITEBYTECODE=1",
            "-E",
            f"HOME={scratch}",
            str(sysroot / PYTHON),
            "-m",
            "edgekiln.runtime.verify",
            str(artifact),
        ]
        say(f"running {manifest.artifact_id} ({manifest.backend}) under {Path(qemu).name} …")
        started = time.perf_counter()
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=TIMEOUT_S,
                env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
            )
        except subprocess.TimeoutExpired:
            raise CompileError(f"the emulated run took over {TIMEOUT_S} s") from None
    return _report(result, time.perf_counter() - started, qemu, sysroot, site)


def _report(result: subprocess.CompletedProcess, seconds: float, qemu: str, sysroot: Path, site: Path) -> dict:
    lines = result.stdout.strip().splitlines()
    try:
        report = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise CompileError(f"the emulated runtime failed (exit {result.returncode}): {tail}") from None
    wheels = sorted(p.name.removesuffix(".dist-info") for p in site.glob("*.dist-info"))
    report["emulated"] = {
        "machine": "aarch64 (qemu-user)",
        "qemu": Path(qemu).name,
        "sysroot": str(sysroot),
        "wheels": wheels,
        "seconds": round(seconds, 1),
    }
    return report
