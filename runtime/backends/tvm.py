"""TVM backend: the artifact's shape buckets, each a shared library run by the Relax virtual
machine from TVM's runtime alone (no compiler library needed on the device).

Every library path is checked to lie inside the artifact folder before any library is loaded. A
Relax VM is not thread-safe, so each bucket keeps a pool of VMs over the one loaded library and the
shared weights: concurrent calls each take their own. TVM's worker pool is per calling thread, so
each thread that runs the session gets the session's thread count."""

from __future__ import annotations

import platform
import threading
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from ..artifact import first_error
from ..cpus import allowed_cpus, x86_isa
from ..errors import ArtifactError, BackendUnavailableError
from ..feeds import token_limit
from ..manifest import Manifest
from ..npz import read_arrays
from ..paths import inside
from . import tvm_cuda
from .base import BackendOptions, Device
from .buckets import run_bucketed
from .pool import Pool
from .spec import BackendSpec
from .tvm_index import INDEX_FORMAT, PARAMS_FILE, Bucket, TvmIndex
from .tvm_libraries import loadable_copy

_RECOMPILE = "recompile the artifact with this edgekiln version"
SHARE_ALL_CPUS = -3  # TVM's AffinityMode kSpecifyThreadShareAllCore: threads may run on any of the CPUs given

_MACHINE = {"amd64": "x86_64", "arm64": "aarch64"}


def host_arch() -> str:
    machine = platform.machine().lower()
    return _MACHINE.get(machine, machine)


def read_index(path: Path) -> TvmIndex:
    try:
        index = TvmIndex.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise ArtifactError(f"cannot read {path.name} ({exc.strerror or exc})", hint=_RECOMPILE) from None
    except ValidationError as exc:
        raise ArtifactError(
            f"{path.name} is not a valid TVM bucket index: {first_error(exc)}", hint=_RECOMPILE
        ) from None
    if index.format != INDEX_FORMAT:
        raise ArtifactError(
            f"{path.name} has format {index.format}; this runtime reads format {INDEX_FORMAT}",
            hint="use the edgekiln version that compiled the artifact",
        )
    return index


class TvmSession:
    name = "tvm"

    def __init__(
        self, index: TvmIndex, machines: dict[Bucket, tuple[Pool, list]], output_names: list[str], device, threads: int
    ) -> None:
        self._index = index
        self._machines = machines
        self._output_names = output_names
        self._device = device
        self._threads = threads
        self._configured = threading.local()

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return run_bucketed(self._index, feeds, self._output_names, self._run_bucket)

    @property
    def static_lengths(self) -> tuple[int, ...]:
        """The buckets' sequence lengths (warmup.py runs each once)."""
        return tuple(sorted({bucket.sequence for bucket in self._index.buckets if bucket.sequence is not None}))

    def _run_bucket(self, bucket: Bucket, arrays: list[np.ndarray]) -> list[np.ndarray]:
        import tvm

        if not getattr(self._configured, "done", False):  # TVM's worker pool belongs to the calling thread
            share_cpus(tvm, self._threads)
            self._configured.done = True
        pool, weights = self._machines[bucket]
        with pool.take() as main:
            try:
                result = main(*[tvm.runtime.tensor(a, self._device) for a in arrays], *weights)
                values = [result] if hasattr(result, "numpy") else list(result)  # one tensor, or a tuple
                return [np.array(v.numpy(), copy=True) for v in values]
            except Exception as exc:  # TVM's own error types: a library that does not fit its index
                raise ArtifactError(
                    f"TVM failed running {bucket.library}: {_first_line(exc)}", hint=_RECOMPILE
                ) from None


def share_cpus(tvm, threads: int) -> None:
    """TVM's worker pool for the calling thread: `threads` threads sharing every CPU this process may use.
    TVM's other modes pin the calling thread itself to the first core: each process that opened a TVM
    artifact then ran all its Python on core 0, whatever else it did (two test workers, or two servers,
    on one core while the other idled)."""
    tvm.get_global_func("runtime.config_threadpool")(SHARE_ALL_CPUS, threads, [str(cpu) for cpu in allowed_cpus()])


def open_session(folder: Path, manifest: Manifest, options: BackendOptions) -> TvmSession:
    index = read_index(inside(folder, manifest.model_file))
    check_index(index, manifest)
    return open_buckets(folder, index, [spec.name for spec in manifest.outputs], options)


def check_index(index: TvmIndex, manifest: Manifest) -> None:
    """The index must describe the manifest's model: inputs among the model's (the libraries may take
    fewer: an input only shape ops read is folded away at fixed shapes), axes that exist."""
    ranks = {spec.name: len(spec.shape) for spec in manifest.inputs}
    out_ranks = {spec.name: len(spec.shape) for spec in manifest.outputs}
    problems = []
    if not index.inputs or len(set(index.inputs)) != len(index.inputs) or not set(index.inputs) <= set(ranks):
        problems.append(f"inputs {list(index.inputs)} are not among the model's {sorted(ranks)}")
    for what, axes, known in (
        ("sequence_axes", index.sequence_axes, ranks),
        ("output_sequence_axes", index.output_sequence_axes, out_ranks),
    ):
        problems += [
            f"{what} names {name}:{axis}, which is not an axis after the batch axis"
            for name, axis in axes.items()
            if not 1 <= axis < known.get(name, 0)
        ]
    problems += [f"pad_values names {name}, not an input" for name in index.pad_values if name not in ranks]
    problems += [
        f"pad value {value} is not a valid value of input {name}"
        for name, value in index.pad_values.items()
        if name in ranks and not _pad_fits(manifest, name, value)
    ]
    if problems:
        raise ArtifactError(f"tvm.json does not match the manifest: {problems[0]}", hint=_RECOMPILE)


def _pad_fits(manifest: Manifest, name: str, value: int) -> bool:
    """Padding goes through the same gathers as ids: it must be a valid value of its input."""
    limit = token_limit(manifest.tokenizer, name) if manifest.tokenizer is not None else None
    return value >= 0 and (limit is None or value < limit) and value < 2**31


def _check_isa(index: TvmIndex) -> None:
    """An x86 library compiled for features this CPU lacks would stop at an illegal instruction (SIGILL,
    no message): refused first. (aarch64 is not checked: under qemu-user /proc/cpuinfo is the host's.)"""
    here = x86_isa() if index.device == "cpu" and index.arch == "x86_64" else None
    missing = sorted(set(index.isa) - here) if here else []
    if missing:
        raise BackendUnavailableError(
            f"this TVM artifact's code uses {', '.join(missing)}, which this CPU lacks (it would stop at an "
            "illegal instruction)",
            hint="compile it for a target this CPU has: --target host here, or x86-64-avx2",
        )


def open_buckets(folder: Path, index: TvmIndex, output_names: list[str], options: BackendOptions) -> TvmSession:
    """Load every bucket's library with its weights (shared between buckets) onto the device."""
    if index.arch != host_arch():
        raise BackendUnavailableError(
            f"this TVM artifact was compiled for {index.arch}; this machine is {host_arch()}",
            hint="run it on the target device"
            + ("" if index.device == "cuda" else ", or check it here with `edgekiln verify ARTIFACT --emulate`"),
        )
    _check_isa(index)
    libraries = {bucket: inside(folder, bucket.library) for bucket in index.buckets}  # all, before loading any
    stored = read_arrays(inside(folder, PARAMS_FILE), PARAMS_FILE)
    missing = sorted({key for bucket in index.buckets for key in bucket.params} - set(stored))
    if missing:
        raise ArtifactError(f"{PARAMS_FILE} lacks weights {missing[:3]} that tvm.json names", hint=_RECOMPILE)
    tvm = _tvm()
    device = _device(tvm, index, options.device)
    if index.device == "cuda":
        tvm_cuda.provide(folder, index)  # the kernels' machine code, compiled at build time
    share_cpus(tvm, options.threads)
    params = {key: tvm.runtime.tensor(stored[key], device) for key in stored}
    machines = {}
    for bucket, path in libraries.items():
        try:
            library = tvm.runtime.load_module(str(loadable_copy(path)))
            pool = Pool(lambda library=library: tvm.runtime.vm.VirtualMachine(library, device)["main"])
            pool.prime()  # the first VM now, so a library that is not a Relax VM fails at load
        except Exception as exc:  # TVM raises its own error types for a bad library
            raise ArtifactError(
                f"TVM cannot load {bucket.library}: {_first_line(exc)}", hint="recompile the artifact for this machine"
            ) from None
        machines[bucket] = (pool, [params[key] for key in bucket.params])
    return TvmSession(index, machines, output_names, device, options.threads)


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _tvm():
    try:
        import tvm
        import tvm.runtime.vm  # noqa: F401
    except ImportError:
        raise BackendUnavailableError(
            "this artifact needs TVM's runtime, which is not installed here", hint="pip install 'edgekiln[tvm]'"
        ) from None
    return tvm


def _device(tvm, index: TvmIndex, requested: Device):
    if requested is Device.CUDA and index.device != "cuda":
        raise BackendUnavailableError(
            "this TVM artifact was compiled for the CPU; it cannot run on CUDA",
            hint="recompile with a CUDA target profile (nvidia-cuda, jetson-orin)",
        )
    if index.device == "cpu":
        return tvm.cpu(0)
    if requested is Device.CPU:
        raise BackendUnavailableError(
            "this TVM artifact was compiled for CUDA; it cannot run on the CPU",
            hint="recompile with a CPU target profile",
        )
    tvm_cuda.load_cuda_runtime()
    device = tvm.cuda(0)
    if not device.exist:
        raise BackendUnavailableError(
            "this TVM artifact was compiled for CUDA, and no CUDA GPU is visible here",
            hint="run it on a machine with an NVIDIA GPU and its driver",
        )
    return device


def opened_files(folder: Path, manifest: Manifest) -> list[str]:
    """Besides the index: the weights and every bucket's library (read from the index, not loaded)."""
    from ..paths import inside

    index = read_index(inside(folder, manifest.model_file))
    kernels = [kernel.file for bucket in index.buckets for kernel in bucket.kernels]
    return [PARAMS_FILE, *(bucket.library for bucket in index.buckets), *kernels]


SPEC = BackendSpec(
    name="tvm",
    description="TVM (Relax): one shared library per shape bucket, cross-compiled for the target; float only",
    runtime="edgekiln.runtime.backends.tvm:open_session",
    opened_files="edgekiln.runtime.backends.tvm:opened_files",
    lowering="edgekiln.compiler.passes.lower_tvm_setup:make_lowering",
    precisions=("fp32",),
    target_fields=("tvm_target",),
    options="edgekiln.compiler.passes.lower_tvm_setup:TvmOptions",
    emulation_wheels=("apache-tvm", "apache-tvm-ffi"),
)
