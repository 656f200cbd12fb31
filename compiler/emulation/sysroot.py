"""An emulated aarch64 machine's files, built once into the cache: a Debian arm64 root made with
`debootstrap --foreign` (its packages unpacked without running any arm64 code, so no binfmt_misc
is needed) and, per backend, the aarch64 wheels the runtime needs installed into a site folder."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from edgekiln.runtime.backends import BackendSpec, backend_spec
from edgekiln.runtime.progress import Progress

from ..errors import CompileError

SUITE, MIRROR = "bookworm", "http://deb.debian.org/debian"
DEB_PACKAGES = ("python3.11", "libstdc++6", "libgomp1")
PYTHON = "usr/bin/python3.11"  # Debian bookworm's Python: the wheels are cp311
COMMON_WHEELS = ("numpy", "pydantic", "tokenizers", "pillow")  # pillow: verify checks image preprocessing too
# Versions that differ from this machine's for the emulated run: onnxruntime 1.32.0's aarch64 wheel
# dies with SIGSEGV at import under qemu-user 7.2 (Debian bookworm), whatever -cpu is set; 1.20.1
# imports and runs. The artifact's ONNX (opset 18) is what is checked, not the wheel.
EMULATION_VERSIONS = {"onnxruntime": "1.20.1"}
COMPLETE = ".edgekiln-complete"
Say = Callable[[str], None]


def ensure_sysroot(cache_root: Path, say: Say) -> Path:
    root = cache_root / "emulation" / f"debian-{SUITE}-arm64"
    if (root / COMPLETE).exists():
        return root
    _need_tool("debootstrap", "apt-get install debootstrap")
    _need_tool("dpkg-deb", "apt-get install dpkg")
    if os.geteuid() != 0:
        raise CompileError(
            "building the emulation sysroot runs debootstrap, which needs root",
            hint=f"run this once as root (it is cached in {root})",
        )
    partial = root.with_name(f"{root.name}.partial-{uuid.uuid4().hex[:8]}")
    partial.parent.mkdir(parents=True, exist_ok=True)
    say(f"building a Debian {SUITE} arm64 sysroot in {root} (once; downloads about 40 MB) …")
    try:
        _run(
            [
                "debootstrap",
                "--arch=arm64",
                "--foreign",
                "--variant=minbase",
                f"--include={','.join(DEB_PACKAGES)}",
                SUITE,
                str(partial),
                MIRROR,
            ],
            f"debootstrap could not fetch Debian {SUITE} arm64 from {MIRROR}",
            "the first --emulate run needs network access to the Debian mirror",
        )
        _unpack_debs(partial)
        (partial / COMPLETE).touch()
        partial.rename(root)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return root


def ensure_site(cache_root: Path, backend: str, say: Say) -> Path:
    """The runtime's aarch64 wheels, pinned to the versions installed here."""
    spec = check_backend(backend)
    pins = [
        f"{name}=={EMULATION_VERSIONS.get(name) or _installed(name)}" for name in COMMON_WHEELS + spec.emulation_wheels
    ]
    key = hashlib.sha256(" ".join(pins).encode()).hexdigest()[:12]
    site = cache_root / "emulation" / f"site-aarch64-{backend}-{key}"
    if (site / COMPLETE).exists():
        return site
    partial = site.with_name(f"{site.name}.partial-{uuid.uuid4().hex[:8]}")
    say(f"installing aarch64 wheels {' '.join(pins)} into {site} (once) …")
    try:
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--target",
                str(partial),
                "--only-binary=:all:",
                "--platform",
                "manylinux_2_28_aarch64",
                "--platform",
                "manylinux2014_aarch64",
                "--python-version",
                "3.11",
                "--implementation",
                "cp",
                *pins,
            ],
            "pip could not fetch the aarch64 wheels",
            "the first --emulate run needs access to PyPI",
        )
        (partial / COMPLETE).touch()
        partial.rename(site)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return site


def check_backend(backend: str) -> BackendSpec:
    """The backend's spec, when its artifacts can run under emulation (its spec lists aarch64 wheels)."""
    spec = backend_spec(backend)
    if spec.emulation_wheels is None:
        raise CompileError(
            f"{backend} artifacts are not checked under emulation: {spec.emulation_refusal}",
            hint="run `edgekiln verify ARTIFACT` on the device",
        )
    return spec


def _unpack_debs(root: Path) -> None:
    debs = sorted((root / "var" / "cache" / "apt" / "archives").glob("*.deb"))
    bar = Progress(len(debs), "unpacking arm64 packages")
    for deb in debs:
        _run(["dpkg-deb", "-x", str(deb), str(root)], f"dpkg-deb could not unpack {deb.name}", "")
        deb.unlink()
        bar.advance(deb.name.split("_")[0])
    bar.close()


def _installed(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        raise CompileError(
            f"{name} is not installed here, so its version for the emulated machine is unknown",
            hint="pip install 'edgekiln[all]'",
        ) from None


def _need_tool(tool: str, install: str) -> None:
    if shutil.which(tool) is None:
        raise CompileError(f"--emulate needs {tool}, which is not installed", hint=install)


def _run(command: list[str], failure: str, hint: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise CompileError(f"{failure}: {tail[0]}", hint=hint or None)
