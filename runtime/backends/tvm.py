"""TVM backend: the artifact's shape buckets, each a shared library run by the Relax virtual
machine from TVM's runtime alone (no compiler library needed on the device)."""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from ..errors import ArtifactError, BackendUnavailableError
from ..manifest import Manifest
from .base import BackendOptions, Device
from .buckets import run_bucketed
from .spec import BackendSpec
from .tvm_index import INDEX_FORMAT, PARAMS_FILE, Bucket, TvmIndex

_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}


def host_arch() -> str:
    machine = platform.machine().lower()
    return _MACHINE.get(machine, machine)


def read_index(path: Path) -> TvmIndex:
    try:
        index = TvmIndex.model_validate_json(path.read_text())
    except (OSError, ValidationError) as exc:
        raise ArtifactError(f"{path.name} is not a valid TVM bucket index: {str(exc).splitlines()[0]}",
                            hint="recompile the artifact with this edgekiln version") from None
    if index.format != INDEX_FORMAT:
        raise ArtifactError(f"{path.name} has format {index.format}; this runtime reads format {INDEX_FORMAT}",
                            hint="use the edgekiln version that compiled the artifact")
    return index


class TvmSession:
    name = "tvm"

    def __init__(self, index: TvmIndex, machines: dict[Bucket, tuple], output_names: list[str], device) -> None:
        self._index = index
        self._machines = machines
        self._output_names = output_names
        self._device = device

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return run_bucketed(self._index, feeds, self._output_names, self._run_bucket)

    def _run_bucket(self, bucket: Bucket, arrays: list[np.ndarray]) -> list[np.ndarray]:
        import tvm

        main, weights = self._machines[bucket]
        result = main(*[tvm.runtime.tensor(a, self._device) for a in arrays], *weights)
        values = [result] if hasattr(result, "numpy") else list(result)  # one tensor, or a tuple of them
        return [np.array(v.numpy(), copy=True) for v in values]


def open_session(folder: Path, manifest: Manifest, options: BackendOptions) -> TvmSession:
    index = read_index(folder / manifest.model_file)
    return open_buckets(folder, index, [spec.name for spec in manifest.outputs], options)


def open_buckets(folder: Path, index: TvmIndex, output_names: list[str], options: BackendOptions) -> TvmSession:
    """Load every bucket's library with its weights (shared between buckets) onto the device."""
    if index.arch != host_arch():
        raise BackendUnavailableError(
            f"this TVM artifact was compiled for {index.arch}; this machine is {host_arch()}",
            hint="run it on the target device, or check it here with `edgekiln verify ARTIFACT --emulate`")
    tvm = _tvm()
    device = _device(tvm, index, options.device)
    tvm.get_global_func("runtime.config_threadpool")(0, options.threads)
    with np.load(folder / PARAMS_FILE) as stored:
        params = {key: tvm.runtime.tensor(stored[key], device) for key in stored.files}
    machines = {}
    for bucket in index.buckets:
        try:
            library = tvm.runtime.load_module(str(folder / bucket.library))
        except Exception as exc:  # TVM raises its own error types for a bad library
            raise ArtifactError(f"TVM cannot load {bucket.library}: {str(exc).splitlines()[0]}",
                                hint="recompile the artifact for this machine") from None
        vm = tvm.runtime.vm.VirtualMachine(library, device)
        machines[bucket] = (vm["main"], [params[key] for key in bucket.params])
    return TvmSession(index, machines, output_names, device)


def _tvm():
    try:
        import tvm
        import tvm.runtime.vm  # noqa: F401
    except ImportError:
        raise BackendUnavailableError("this artifact needs TVM's runtime, which is not installed here",
                                      hint="pip install 'edgekiln[tvm]'") from None
    return tvm


def _device(tvm, index: TvmIndex, requested: Device):
    if requested is Device.CUDA and index.device != "cuda":
        raise BackendUnavailableError("this TVM artifact was compiled for the CPU; it cannot run on CUDA",
                                      hint="recompile with a CUDA target profile (nvidia-cuda, jetson-orin)")
    if index.device == "cpu":
        return tvm.cpu(0)
    if requested is Device.CPU:
        raise BackendUnavailableError("this TVM artifact was compiled for CUDA; it cannot run on the CPU",
                                      hint="recompile with a CPU target profile")
    device = tvm.cuda(0)
    if not device.exist:
        raise BackendUnavailableError("this TVM artifact was compiled for CUDA, and no CUDA GPU is visible here",
                                      hint="run it on a machine with an NVIDIA GPU and its driver")
    return device


SPEC = BackendSpec(
    name="tvm",
    description="TVM (Relax): one shared library per shape bucket, cross-compiled for the target; float only",
    runtime="edgekiln.runtime.backends.tvm:open_session",
    lowering="edgekiln.compiler.passes.lower_tvm_setup:make_lowering",
    precisions=("fp32",),
    target_fields=("tvm_target",),
    options="edgekiln.compiler.passes.lower_tvm_setup:TvmOptions",
    emulation_wheels=("apache-tvm", "apache-tvm-ffi"),
)
