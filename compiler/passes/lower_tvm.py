"""Lowering to TVM: one shared library per (batch, sequence) bucket, weights stored once, checked
against ONNX Runtime through the runtime's own bucket dispatch (padding included). A build for
another machine (aarch64, CUDA) is checked through a twin built for this machine's CPU."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from edgekiln.runtime.backends.base import BackendOptions
from edgekiln.runtime.backends.tvm import host_arch, open_buckets
from edgekiln.runtime.backends.tvm_index import INDEX_FILE, PARAMS_FILE, Bucket, TvmIndex

from ..errors import CompileError
from ..fidelity import FidelityConfig, check, fidelity_feeds, is_classifier, require
from ..graph_io import graph_io
from ..input_shapes import suggestion
from ..tvm_build import build as tvm_build
from ..tvm_build import cuda
from ..tvm_build.importer import import_fixed, main_inputs, param_key
from ..tvm_build.shapes import BucketAxes, bucket_axes, sequence_buckets
from ..tvm_build.target import HOST_TWIN
from ..tvm_build.tuning import tune
from .base import BuildState, Pass, PassConfig
from .registry import register_pass
from .verify_fidelity import ort_runner


class LowerTvmConfig(PassConfig):
    target: dict  # TVM target in dict form (tvm_build.target.target_dict)
    arch: str  # CPU architecture the libraries run on
    sequence_buckets: tuple[int, ...] = (32, 64, 128)
    batch_buckets: tuple[int, ...] = (1,)
    tune_trials: int = Field(default=0, ge=0)
    tuning_database: str | None = None  # folder of the MetaSchedule database (in the build cache)
    fidelity: FidelityConfig = FidelityConfig(max_abs_diff=1e-4)


@register_pass
class LowerTvm(Pass):
    name = "lower_tvm"
    version = 2  # 2: CUDA kernels are compiled to a fatbin (version 1 stored their source only)
    Config = LowerTvmConfig
    changes_model = False
    lowers_to = (INDEX_FILE, PARAMS_FILE)

    def run(self, state: BuildState, out_dir: Path) -> dict[str, Any]:
        import tvm

        cfg = self.config
        io = graph_io(_onnx(state.model_path))  # read once: both builds and the check use it
        index, tuned = self._build_all(state, io, out_dir, cfg.target, cfg.arch, tune_trials=cfg.tune_trials)
        details = {
            "tvm": tvm.__version__,
            "target": cfg.target,
            "arch": cfg.arch,
            "tune_trials": tuned,
            "buckets": [[b.batch, b.sequence] for b in index.buckets],
        }
        if cfg.arch == host_arch() and index.device == "cpu":
            report = self._check(state, io, out_dir, index, details | {"checked_on": "this build"})
        else:
            with tempfile.TemporaryDirectory(prefix="edgekiln-tvm-twin-") as twin:
                twin_index, _ = self._build_all(state, io, Path(twin), HOST_TWIN, host_arch(), tune_trials=0)
                report = self._check(
                    state,
                    io,
                    Path(twin),
                    twin_index,
                    details
                    | {"checked_on": f"a build of the same Relax modules for this machine's CPU ({host_arch()})"},
                )
        return report.model_dump(mode="json")

    def _build_all(
        self, state: BuildState, io, out_dir: Path, target: dict, arch: str, *, tune_trials: int
    ) -> tuple[TvmIndex, int]:
        inputs, outputs = io
        axes = bucket_axes(inputs, outputs)
        tokenizer = state.source.tokenizer
        lengths = (
            (None,)
            if axes.sequence_name is None
            else sequence_buckets(self.config.sequence_buckets, tokenizer.max_length if tokenizer else None)
        )
        shapes = [(b, s) for s in lengths for b in self.config.batch_buckets]
        per_bucket = tune_trials // len(shapes)
        on_gpu = target["kind"] == "cuda"
        if on_gpu:
            cuda.require_nvcc()  # before any bucket is built
        weights: dict[str, np.ndarray] = {}
        buckets, taken = [], set()
        for batch, sequence in shapes:
            mod, params = import_fixed(
                state.model_path, {spec.name: axes.shape(spec, batch, sequence) for spec in inputs}
            )
            taken.add(main_inputs(mod))
            database = None
            if per_bucket:
                database = Path(self.config.tuning_database)
                tune(mod, target, database, per_bucket, workers=os.cpu_count() or 1)
            library = f"tvm_b{batch}" + (f"_s{sequence}" if sequence else "") + ".so"
            executable = tvm_build.build(mod, target, tuned_database=database)
            tvm_build.export(executable, out_dir / library, arch)
            kernels = cuda.write_kernels(executable, out_dir, library[:-3], target.get("arch")) if on_gpu else ()
            keys = tuple(param_key(p) for p in params)
            weights.update(zip(keys, params))
            buckets.append(Bucket(batch=batch, sequence=sequence, library=library, params=keys, kernels=kernels))
        np.savez(out_dir / PARAMS_FILE, **weights)
        if len(taken) != 1:
            raise CompileError(
                f"internal: TVM's buckets take different inputs: {sorted(taken)}",
                hint="compile with one --sequence-buckets entry, or use --backend onnxruntime",
            )
        specs = {spec.name: spec for spec in inputs}
        index = _index(state, [specs[name] for name in taken.pop()], axes, target, arch, buckets)
        (out_dir / INDEX_FILE).write_text(index.model_dump_json(indent=2))
        return index, per_bucket * len(shapes)

    def _check(self, state: BuildState, io, folder: Path, index: TvmIndex, details: dict):
        output_names = [spec.name for spec in io[1]]
        session = open_buckets(folder, index, output_names, BackendOptions(threads=2))
        longest = max(b.sequence or 0 for b in index.buckets) or None
        report = check(
            ort_runner(state.model_path, optimize=True),
            lambda feeds: list(session.run(feeds).values()),
            fidelity_feeds(state, self.config.fidelity, longest),
            self.config.fidelity,
            classifier=is_classifier(state),
            names=("onnxruntime (same ONNX)", "TVM"),
            details=details,
            shape_hint=suggestion(state),
        )
        if all(bucket.sequence is None for bucket in index.buckets):  # fixed shapes: no padding involved
            return require(
                report,
                hint="use --backend onnxruntime or openvino, or loosen the recipe's [fidelity] "
                "max_abs_diff if the outputs are large (e.g. box coordinates in pixels)",
            )
        return require(
            report,
            hint="use --backend onnxruntime, or --sequence-buckets with the exact lengths you "
            "use; padding to a bucket may change this model's results",
        )


def _index(state: BuildState, inputs, axes: BucketAxes, target: dict, arch: str, buckets: list[Bucket]) -> TvmIndex:
    tokenizer = state.source.tokenizer
    pad_values = {
        spec.name: (tokenizer.pad_id if tokenizer and tokenizer.feeds.get(spec.name) == "ids" else 0) for spec in inputs
    }
    names = tuple(spec.name for spec in inputs)  # those `main` takes: the runtime passes no others
    return TvmIndex(
        arch=arch,
        device="cuda" if target["kind"] == "cuda" else "cpu",
        target=target,
        inputs=names,
        sequence_axes={name: axis for name, axis in axes.sequence_axes.items() if name in names},
        pad_values=pad_values,
        output_sequence_axes=axes.output_sequence_axes,
        buckets=tuple(buckets),
    )


def _onnx(path: Path):
    import onnx

    return onnx.load(str(path), load_external_data=False)
