"""Machine code for a TVM CUDA artifact's kernels, handed to TVM's runtime when it loads a library.

TVM 0.27 stores a CUDA module as source and compiles it when the library is loaded, through the
global function `tvm_callback_cuda_compile` (TVM's own needs NVRTC or nvcc on the device). edgekiln
compiles the kernels at build time (compiler/tvm_build/cuda.py) and stores one fatbin per module
beside the library; this callback answers TVM from those files, keyed by the source's SHA-256, so a
device needs only the NVIDIA driver. One registry per process, shared by every loaded artifact.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from ..errors import ArtifactError, BackendUnavailableError
from ..paths import inside
from .tvm_index import TvmIndex

CALLBACK = "tvm_callback_cuda_compile"
_lock = threading.Lock()
_machine_code: dict[str, bytes] = {}  # source SHA-256 -> fatbin


def source_key(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


def provide(folder: Path, index: TvmIndex) -> None:
    """Make this artifact's fatbins what TVM gets when it asks to compile their kernels."""
    kernels = [kernel for bucket in index.buckets for kernel in bucket.kernels]
    if not kernels:
        raise ArtifactError(
            "this TVM CUDA artifact holds no compiled kernels (built before edgekiln compiled them ahead of time)",
            hint="recompile it with a CUDA target profile on a machine with nvcc",
        )
    code = {kernel.source_sha256: inside(folder, kernel.file).read_bytes() for kernel in kernels}
    import tvm_ffi

    with _lock:
        _machine_code.update(code)
        # every time: importing tvm.support.nvcc (the compiler does) registers TVM's own callback
        tvm_ffi.register_global_func(CALLBACK, _compile, override=True)


def _compile(code, *_rest):
    key = source_key(str(code))
    with _lock:
        found = _machine_code.get(key)
    if found is None:  # TVM reports this as the library's load error
        raise RuntimeError(
            f"edgekiln: no compiled kernels for CUDA source {key[:12]} in the loaded artifacts; recompile the artifact"
        )
    return bytearray(found)


def load_cuda_runtime() -> None:
    """Load TVM's CUDA runtime library. `import tvm` loads it only with the compiler (and then hides
    a failure); with the runtime alone (TVM_USE_RUNTIME_LIB=1, as on a device) it is not loaded at
    all. TVM 0.27 internals: the library handles TVM keeps in `tvm.base._LOADED_LIBS`."""
    from tvm.base import _LOADED_LIBS
    from tvm_ffi.libinfo import load_lib_ctypes

    with _lock:
        if "tvm_runtime_cuda" in _LOADED_LIBS:
            return
        folder = Path(_LOADED_LIBS["tvm_runtime"]._name).resolve().parent
        try:
            _LOADED_LIBS["tvm_runtime_cuda"] = load_lib_ctypes(
                package="tvm", target_name="tvm_runtime_cuda", extra_lib_paths=[folder], mode="RTLD_LOCAL"
            )
        except (OSError, RuntimeError) as exc:
            cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BackendUnavailableError(
                f"TVM's CUDA runtime could not be loaded: {cause}",
                hint="this needs the NVIDIA driver (libcuda.so.1) and the CUDA 13 runtime (libcudart.so.13: "
                "the CUDA toolkit's lib folder on LD_LIBRARY_PATH, or pip install nvidia-cuda-runtime)",
            ) from None
