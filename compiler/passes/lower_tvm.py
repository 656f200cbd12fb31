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
from ..graph_io import file_io
from ..input_shapes import suggestion
from ..padding_check import refuse_bucket_padding
from ..tvm_build import build as tvm_build
from ..tvm_build import cuda
from ..tvm_build.importer import import_fixed, main_inputs, param_key
from ..tvm_build.remote import parse_remote
from ..tvm_build.shapes import BucketAxes, bucket_axes, check_lengths, pad_values, sequence_buckets
from ..tvm_build.target import HOST_TWIN
from ..tvm_build.tuning import TRIALS_PER_ROUND, tune, tune_for_minutes
from ..tvm_build.tuning_db import fingerprint, record_count
from .base import BuildState, Pass, PassConfig
from .registry import register_pass
from .verify_fidelity import ort_runner


class LowerTvmConfig(PassConfig):
    target: dict  # TVM target in dict form (tvm_build.target.target_dict)
    arch: str  # CPU architecture the libraries run on
    isa: tuple[str, ...] = ()  # the target's instruction-set features (recorded: checked before a load)
    sequence_buckets: tuple[int, ...] = (32, 64, 128)
    # asked for with --sequence-buckets (not the profile's default): refused for a model without a sequence
    # axis, before the cache is asked (so out of the cache key: it changes no output)
    sequence_buckets_given: bool = Field(default=False, exclude=True)
    batch_buckets: tuple[int, ...] = (1,)
    tune_trials: int = Field(default=0, ge=0)
    tune_minutes: float = Field(default=0, ge=0)  # a wall-clock budget instead of a trial count
    tuning_database: str | None = None  # folder of the MetaSchedule database (in the build cache)
    tuning_fingerprint: str | None = None  # sha256 of its records when an untuned build applies them
    # where candidates are measured (tvm_build.remote's address); out of the cache key: the database
    # is keyed by the target, and a board's address says nothing about its kernels
    tune_remote: str | None = Field(default=None, exclude=True)
    fidelity: FidelityConfig = FidelityConfig(max_abs_diff=1e-4)


@register_pass
class LowerTvm(Pass):
    name = "lower_tvm"
    # 2: CUDA kernels are compiled to a fatbin (version 1 stored their source only); 3: CPU default schedules;
    # 4: QDQ int8 products as integer kernels on CPU (int8_rewrites); 5: the check pads to every bucket
    # 6: tvm.json records the target's ISA features, checked before a load
    version = 6
    Config = LowerTvmConfig
    changes_model = False
    lowers_to = (INDEX_FILE, PARAMS_FILE)

    def check_preconditions(self, state: BuildState) -> None:
        super().check_preconditions(state)
        if state.source.tokenizer is not None:
            refuse_bucket_padding(state, "TVM (its sequence buckets)")
        if not self.config.sequence_buckets_given:
            return
        if bucket_axes(*file_io(state.model_path)).sequence_name is None:
            raise CompileError(
                "--sequence-buckets sets a text model's sequence sizes; this model's inputs have no sequence axis",
                hint="drop --sequence-buckets for this model",
            )
        tokenizer = state.source.tokenizer
        check_lengths(self.config.sequence_buckets, tokenizer.max_length if tokenizer else None)

    def run(self, state: BuildState, out_dir: Path) -> dict[str, Any]:
        import tvm

        cfg = self.config
        io = file_io(state.model_path)  # read once: both builds and the check use it
        database = Path(cfg.tuning_database) if cfg.tuning_database else None
        applied = [0, 0]  # kernels scheduled from the database, kernels in all
        defaults: dict[str, int] = {}  # kernels edgekiln's default CPU schedules scheduled, by rule
        index, tuned = self._build_all(
            state,
            io,
            out_dir,
            cfg.target,
            cfg.arch,
            tune_trials=cfg.tune_trials,
            tune_minutes=cfg.tune_minutes,
            database=database,
            applied=applied,
            defaults=defaults,
        )
        details = {
            "tvm": tvm.__version__,
            "target": cfg.target,
            "arch": cfg.arch,
            "tune_trials": tuned,
            "tune_minutes": cfg.tune_minutes,
            **({"tune_remote": cfg.tune_remote} if cfg.tune_remote and tuned else {}),
            "buckets": [[b.batch, b.sequence] for b in index.buckets],
            "model_max_length": state.source.tokenizer.max_length if state.source.tokenizer else None,
            "cpu_default_schedules": defaults,
            "tuning_database": None
            if database is None
            else {
                "records": record_count(database),
                "fingerprint": fingerprint(database),
                "kernels_from_database": applied[0],
                "kernels": applied[1],
            },
        }
        if cfg.arch == host_arch() and index.device == "cpu":
            report = self._check(state, io, out_dir, index, details | {"checked_on": "this build"})
        else:
            with tempfile.TemporaryDirectory(prefix="edgekiln-tvm-twin-") as twin:
                twin_index, _ = self._build_all(
                    state, io, Path(twin), HOST_TWIN, host_arch(), tune_trials=0, database=None, applied=[0, 0]
                )
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
        self,
        state: BuildState,
        io,
        out_dir: Path,
        target: dict,
        arch: str,
        *,
        tune_trials: int,
        tune_minutes: float = 0,
        database: Path | None,
        applied: list[int],
        defaults: dict[str, int] | None = None,
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
        on_gpu = target["kind"] == "cuda"
        if on_gpu:
            cuda.require_nvcc()  # before any bucket is built
        weights: dict[str, np.ndarray] = {}
        buckets, taken = [], set()
        imported = [
            import_fixed(
                state.model_path,
                {spec.name: axes.shape(spec, batch, sequence) for spec in inputs},
                pack_int8=not on_gpu,  # the integer products have CPU schedules only
            )
            for batch, sequence in shapes
        ]
        trials = (
            0
            if database is None
            else _tune([mod for mod, _ in imported], target, database, tune_trials, tune_minutes, self._remote(arch))
        )
        for (batch, sequence), (mod, params) in zip(shapes, imported):
            taken.add(main_inputs(mod))
            library = f"tvm_b{batch}" + (f"_s{sequence}" if sequence else "") + ".so"
            executable = tvm_build.build(mod, target, tuned_database=database, applied=applied, defaults=defaults)
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
        # the profile's features; a twin built for this machine's CPU (HOST_TWIN: generic code) assumes none
        index = index.model_copy(update={"isa": () if target is HOST_TWIN else self.config.isa})
        (out_dir / INDEX_FILE).write_text(index.model_dump_json(indent=2))
        return index, trials

    def _remote(self, arch: str) -> tuple | None:
        """(the board's RPC address, its arch) when candidates are measured on a board."""
        return None if self.config.tune_remote is None else (parse_remote(self.config.tune_remote), arch)

    def _check(self, state: BuildState, io, folder: Path, index: TvmIndex, details: dict):
        output_names = [spec.name for spec in io[1]]
        session = open_buckets(folder, index, output_names, BackendOptions(threads=2))
        longest = max(b.sequence or 0 for b in index.buckets) or None
        cases = fidelity_feeds(state, self.config.fidelity, longest)
        report = check(
            ort_runner(state.model_path, optimize=True),
            lambda feeds: list(session.run(feeds).values()),
            cases + padded_cases(state, index, {sequence for _, sequence, _ in cases}, self.config.fidelity.seed),
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
            hint="use --backend onnxruntime or openvino: padding a request to this model's sequence "
            "buckets changes its results",
        )


def padded_cases(state: BuildState, index: TvmIndex, checked: set, seed: int) -> list[tuple]:
    """(1, length, feeds) for the shortest length each sequence bucket pads, unless the fidelity shapes
    already hold a padded length: the runtime pads every request to its bucket, so the check must too."""
    lengths = sorted({bucket.sequence for bucket in index.buckets if bucket.sequence is not None})
    rng = np.random.default_rng(seed + 1)
    cases = []
    for below, bucket in zip([0, *lengths], lengths):
        shortest = below + 1
        if shortest < bucket and not any(shortest <= length < bucket for length in checked if length):
            cases.append((1, shortest, state.source.make_feeds(1, shortest, rng)))
    return cases


def _tune(mods: list, target: dict, database: Path, trials: int, minutes: float, remote: tuple | None = None) -> int:
    """Tune the buckets' kernels: `trials` shared evenly, or rounds of TRIALS_PER_ROUND trials per kernel
    until `minutes` are spent (the run stops at the first measured batch past them). Returns the
    trials measured."""
    workers = os.cpu_count() or 1
    if minutes:
        measured, _ = tune_for_minutes(
            mods,
            minutes,
            lambda mod, deadline: tune(
                mod,
                target,
                database,
                TRIALS_PER_ROUND * 10_000,
                workers=workers,
                per_kernel=TRIALS_PER_ROUND,
                remote=remote,
                deadline=deadline,
            ),
        )
        return measured
    per_bucket = trials // len(mods)  # MetaSchedule measures whole batches, so it may run a few more
    return (
        sum(tune(mod, target, database, per_bucket, workers=workers, remote=remote) for mod in mods)
        if per_bucket
        else 0
    )


def _index(state: BuildState, inputs, axes: BucketAxes, target: dict, arch: str, buckets: list[Bucket]) -> TvmIndex:
    names = tuple(spec.name for spec in inputs)  # those `main` takes: the runtime passes no others
    return TvmIndex(
        arch=arch,
        device="cuda" if target["kind"] == "cuda" else "cpu",
        target=target,
        inputs=names,
        sequence_axes={name: axis for name, axis in axes.sequence_axes.items() if name in names},
        pad_values=pad_values(inputs, state.source.tokenizer),
        output_sequence_axes=axes.output_sequence_axes,
        buckets=tuple(buckets),
    )
