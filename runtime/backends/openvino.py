"""OpenVINO backend: compiles the artifact's IR for the CPU with the target's thread count and a
latency hint, in the artifact's precision: f32 unless it was compiled for bf16 (OpenVINO would
otherwise pick bf16 by itself on CPUs that have it), caching the compiled blob so the second load
is fast. Threads are not pinned to cores (OpenVINO's default pins them, which costs 2-4x when other
processes share the cores). An infer request serves one call at a time, so a session shared
between threads takes one from a pool for each call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from ..artifact import first_error
from ..errors import ArtifactError, BackendUnavailableError
from ..manifest import Accelerator, Manifest, Precision
from ..paths import inside
from .base import FROM_BYTES_LIMIT, BackendOptions, Device, checked_bytes
from .openvino_cache import cache_folder, limit_bytes, mark_used, trim
from .openvino_shapes import SHAPES_FILE, StaticDispatch, StaticShapes
from .pool import Pool
from .spec import BackendSpec, QuantizerSpec

Compiled = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


IrBytes = tuple[bytes, bytes]  # an IR's .xml and .bin, as read (and hash-checked) once


def compile_ir(
    path: Path | IrBytes,
    *,
    threads: int,
    cache_dir: Path | None,
    precision: str = "f32",
    shapes: dict[str, list[int]] | None = None,
) -> Compiled:
    """The IR compiled for the CPU, as a function of named arrays returning arrays the caller owns.
    `precision` is OpenVINO's inference precision: f32, or bf16 on CPUs with AVX-512 BF16 or AMX;
    `shapes` fixes every input's shape (a static model), else the IR's own (dynamic) shapes. `path` may
    be the IR's bytes (an artifact's, checked against its manifest: what runs is what was checked)."""
    import openvino as ov

    core = ov.Core()
    config = {
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": precision,
        # OpenVINO pins its threads to cores by default: with other processes on those cores a pinned
        # thread cannot move to a free one (MiniLM int8, 1 thread, 2 busy cores: 21-48 ms pinned, 7-11 unpinned)
        "ENABLE_CPU_PINNING": False,
    }
    if cache_dir is not None:
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(cache_dir)
        except OSError:  # a read-only home on a device: run without the compiled-model cache
            pass
    if shapes is None and not isinstance(path, tuple):  # from the path: a cached blob is all OpenVINO reads
        compiled = core.compile_model(str(path), "CPU", config)
    else:
        model = (
            core.read_model(path[0], ov.Tensor(np.frombuffer(path[1], dtype=np.uint8)))
            if isinstance(path, tuple)
            else core.read_model(str(path))
        )
        if shapes is not None:
            model.reshape({name: ov.PartialShape(shape) for name, shape in shapes.items()})
        compiled = core.compile_model(model, "CPU", config)
    requests = Pool(compiled.create_infer_request)
    requests.prime()
    dtypes = {name: port.get_element_type().to_dtype() for port in compiled.inputs for name in port.get_names()}
    parked = {name: _smallest_tensor(ov, port) for port in compiled.inputs for name in port.get_names()}
    outputs = [(port, port.get_any_name()) for port in compiled.outputs]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        # The request reads the caller's arrays in place (the call is synchronous), then holds a small
        # tensor of its own instead of them; the outputs are copied, as the request's next call
        # overwrites its own. 0.06-0.07 ms a call less than infer(feeds)'s copies (EfficientNet-Lite0,
        # 2 threads). An array converted here is held in `arrays` until the call returns: a shared
        # tensor does not keep it alive.
        arrays = {name: _shareable(array, dtypes.get(name, array.dtype)) for name, array in feeds.items()}
        with requests.take() as request:
            try:
                for name, array in arrays.items():
                    request.set_tensor(name, ov.Tensor(array, shared_memory=True))
                request.infer()
                return {name: request.get_tensor(port).data.copy() for port, name in outputs}
            finally:
                for name in arrays:
                    if name in parked:
                        request.set_tensor(name, parked[name])

    run.names = (frozenset(dtypes), tuple(name for _, name in outputs))  # type: ignore[attr-defined]
    return run


def _shareable(array: np.ndarray, dtype) -> np.ndarray:
    """`array` as a C-ordered array of `dtype` that OpenVINO can share: a read-only one (np.frombuffer, a
    memmap, a PIL image's pixels) is copied, as OpenVINO refuses to share it."""
    converted = np.asarray(array, dtype=dtype, order="C")  # ascontiguousarray would make a scalar 1-d
    return converted if converted.flags.writeable else converted.copy()


def _smallest_tensor(ov, port):
    """A tensor of the input's element type at the smallest shape it accepts (0 for an unbounded axis):
    what a request holds between calls."""
    shape = [dimension.get_min_length() for dimension in port.get_partial_shape()]
    return ov.Tensor(port.get_element_type(), ov.Shape(shape))


class OpenVinoSession:
    name = "openvino"

    def __init__(self, run: Compiled) -> None:
        self._run = run

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run(feeds)

    @property
    def static_lengths(self) -> tuple[int, ...]:
        """The sequence lengths with a static-shape model (compiled on first use; warmup.py compiles them)."""
        return self._run.lengths if isinstance(self._run, StaticDispatch) else ()

    @property
    def static_limit(self) -> int | None:
        """How many static-shape models are kept (shapes past it run on the dynamic model)."""
        return self._run.limit if isinstance(self._run, StaticDispatch) else None


def open_session(folder: Path, manifest: Manifest, options: BackendOptions) -> OpenVinoSession:
    try:
        import openvino  # noqa: F401
    except ImportError:
        raise BackendUnavailableError(
            "this artifact needs OpenVINO, which is not installed here", hint="pip install 'edgekiln[openvino]'"
        ) from None
    if options.device is Device.CUDA or manifest.target.accelerator is Accelerator.CUDA:
        raise BackendUnavailableError("OpenVINO artifacts run on the CPU here; CUDA targets use onnxruntime or tvm")
    limit = limit_bytes()
    cache = cache_folder(manifest.artifact_id) if limit > 0 else None
    precision = "bf16" if manifest.precision is Precision.BF16 else "f32"  # int8 IR: f32 for the rest
    ir = _ir(folder, manifest, options.verified)
    try:
        run = compile_ir(ir, threads=options.threads, cache_dir=cache, precision=precision)
        _check_io(run.names, manifest)
        if SHAPES_FILE in manifest.files:
            shapes = read_shapes(inside(folder, SHAPES_FILE))

            def compile_static(fixed: dict[str, list[int]]) -> Compiled:
                return compile_ir(ir, threads=options.threads, cache_dir=cache, precision=precision, shapes=fixed)

            run = StaticDispatch(shapes, compile_static, run)
        if cache is not None:
            mark_used(cache)
            trim(cache.parent, keep=cache, limit=limit)
        return OpenVinoSession(run)
    except RuntimeError as exc:  # OpenVINO reports bad IR as RuntimeError
        raise ArtifactError(
            f"OpenVINO cannot load {manifest.model_file}: {str(exc).splitlines()[0]}",
            hint="recompile the artifact with this edgekiln version",
        ) from None


def _ir(folder: Path, manifest: Manifest, verified: bool) -> Path | IrBytes:
    """The IR as the bytes whose hashes are checked here (up to 256 MiB together), so that a file swapped
    after the artifact's check (a race) is not what runs; a larger IR loads by path."""
    xml = inside(folder, manifest.model_file)
    weights = xml.with_suffix(".bin")
    if not weights.is_file() or xml.stat().st_size + weights.stat().st_size > FROM_BYTES_LIMIT:
        return xml  # (a missing .bin: OpenVINO says so, as before)
    bin_name = str(Path(manifest.model_file).with_suffix(".bin"))
    return (
        checked_bytes(xml, manifest.model_file, manifest.files, verified),
        checked_bytes(weights, bin_name, manifest.files, verified),
    )


def _check_io(names: tuple[frozenset, tuple[str, ...]], manifest: Manifest) -> None:
    """The manifest's inputs and outputs must be the IR's, or a run would answer under other names."""
    inputs, outputs = names
    declared_in, declared_out = [spec.name for spec in manifest.inputs], [spec.name for spec in manifest.outputs]
    if not set(declared_in) <= inputs or sorted(declared_out) != sorted(outputs):
        raise ArtifactError(
            f"the manifest's inputs {declared_in} and outputs {declared_out} are not {manifest.model_file}'s "
            f"({sorted(inputs)} and {list(outputs)})",
            hint="recompile the artifact",
        )


def opened_files(folder: Path, manifest: Manifest) -> list[str]:
    """Besides the IR's .xml: its weights, and the static shapes when the artifact has them."""
    return [str(Path(manifest.model_file).with_suffix(".bin"))] + (
        [SHAPES_FILE] if SHAPES_FILE in manifest.files else []
    )


def read_shapes(path: Path) -> StaticShapes:
    try:
        return StaticShapes.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise ArtifactError(f"{SHAPES_FILE} is not valid: {first_error(exc)}", hint="recompile the artifact") from None


_QUANTIZER = "edgekiln.compiler.passes.quantize_openvino:make_quantizer"
SPEC = BackendSpec(
    name="openvino",
    description="OpenVINO IR on the CPU, f32 or bf16; int8 static, with calibration data (NNCF; a CNN: the GPTQ QDQ graph)",
    runtime="edgekiln.runtime.backends.openvino:open_session",
    opened_files="edgekiln.runtime.backends.openvino:opened_files",
    lowering="edgekiln.compiler.passes.lower_openvino:make_lowering",
    quantizers={
        "static": QuantizerSpec(_QUANTIZER, needs_calibration=True),
        "auto": QuantizerSpec(_QUANTIZER, needs_calibration=True),
    },
    options="edgekiln.compiler.passes.openvino_static:OpenVinoOptions",
    finishing="edgekiln.compiler.passes.openvino_static:make_static_shapes",
    profiler="edgekiln.runtime.profile.openvino:profile",
    precisions=("fp32", "bf16"),
    accelerators=("none",),  # its CPU plugin: a CUDA target's artifact would never load
    cpu_precision_isa={"bf16": ("avx512_bf16", "amx_bf16")},  # bf16 on the CPU, whatever else the target has
    emulation_refusal="OpenVINO's CPU plugin did not start under qemu-user",
)
