"""CUDA device code for a TVM build, compiled ahead of time with nvcc into one fatbin per library.

TVM 0.27 stores the kernels' CUDA *source* in the library and compiles it when the library is
loaded (NVRTC or nvcc on the device; TVM's nvcc helper also needs a GPU when the target names no
architecture). edgekiln compiles it here instead, beside the library: machine code (SASS) for the
profile's `arch`, or for every architecture in PORTABLE when the profile names none, plus PTX of
the newest one so that later GPUs compile it on first load. The runtime hands these files to TVM
(runtime/backends/tvm_cuda.py).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from edgekiln.runtime.backends.tvm_cuda import source_key
from edgekiln.runtime.backends.tvm_index import CudaKernels

from ..errors import CompileError

# Turing to Hopper: what CUDA 12/13's nvcc all build; PTX of the last one runs on anything newer.
PORTABLE = ("sm_75", "sm_80", "sm_86", "sm_89", "sm_90")
FATBIN_MAGIC = bytes.fromhex("50ed55ba")  # a fatbin's first four bytes (0xBA55ED50, little-endian)


def gencode_flags(arch: str | None) -> list[str]:
    """nvcc's -gencode flags: SASS for each architecture, PTX for the newest."""
    arches = (arch,) if arch else PORTABLE
    flags: list[str] = []
    for one in arches:
        number = one.removeprefix("sm_")
        flags += ["-gencode", f"arch=compute_{number},code=sm_{number}"]
    newest = arches[-1].removeprefix("sm_")
    return [*flags, "-gencode", f"arch=compute_{newest},code=compute_{newest}"]


def nvcc_fatbin(code: str, arch: str | None) -> bytes:
    """Compile one module's CUDA source to a fatbin. No fast-math: kernels keep IEEE exp/erf/div."""
    with tempfile.TemporaryDirectory(prefix="edgekiln-nvcc-") as tmp:
        source, out = Path(tmp) / "kernels.cu", Path(tmp) / "kernels.fatbin"
        source.write_text(code)
        command = ["nvcc", "--fatbin", "-O3", *gencode_flags(arch), "-o", str(out), str(source)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if "error" in line] or done.stderr.splitlines()
            detail = lines[0] if lines else f"exit status {done.returncode}"
            raise CompileError(
                f"nvcc could not compile the CUDA kernels: {detail}",
                hint="check the CUDA toolkit (nvcc --version) supports the profile's arch",
            )
        return out.read_bytes()


def require_nvcc() -> None:
    if shutil.which("nvcc") is None:
        raise CompileError(
            "building CUDA kernels needs nvcc (the CUDA toolkit) on this machine",
            hint="install the CUDA toolkit (nvcc on PATH), or compile for a CPU target profile",
        )


def kernel_sources(executable) -> list[str]:
    """The CUDA source of every CUDA module in a built executable (TVM stores source, not code)."""
    found, stack = [], [executable.mod]
    while stack:
        module = stack.pop()
        if module.kind == "cuda":
            found.append(module.inspect_source())
        stack.extend(module.imports)
    return found


def write_kernels(executable, folder: Path, stem: str, arch: str | None) -> tuple[CudaKernels, ...]:
    """Compile each CUDA module's source to `<stem>.cuda<i>.fatbin` in `folder`."""
    require_nvcc()
    kernels = []
    for number, code in enumerate(kernel_sources(executable)):
        name = f"{stem}.cuda{number}.fatbin"
        (folder / name).write_bytes(nvcc_fatbin(code, arch))
        kernels.append(CudaKernels(source_sha256=source_key(code), file=name))
    if not kernels:
        raise CompileError("internal: TVM built no CUDA module for a CUDA target", hint="use --backend onnxruntime")
    return tuple(kernels)
