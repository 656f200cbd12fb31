"""`edgekiln.compiler.compile`: model + target profile + recipe -> verified artifact folder."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import uuid
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from edgekiln.runtime.manifest import Manifest
from edgekiln.targets import TargetProfile, load_profile

from .artifact_writer import check_output_folder, write_artifact
from .cache import PassCache, default_cache_dir
from .data import Dataset, load_dataset, parse_spec
from .data.images import holds_images
from .errors import CompileError
from .folders import output_lock
from .passes.base import BuildState, Pass
from .passes.check_onnx import CheckOnnx, CheckOnnxConfig
from .passes.export_onnx import ExportConfig, ExportOnnx
from .passes.ort_optimize import OrtOptimize
from .passes.quantize import BudgetError
from .passes.registry import make_pass
from .passes.verify_fidelity import VerifyFidelity
from .pipeline import run_passes
from .planning import Plan, plan_build
from .pruning.entry import prune_model
from .quantization.config import QuantMode
from .quantization.inputs import quantization_inputs
from .recipe import DATA_PATHS, MEMORY_PREFIX, Recipe, parse_recipe
from .sources import ModelSource, resolve_source
from .sources.base import is_timm

DATA_ROLES = tuple(DATA_PATHS)
ATTEMPTS_NOTE = "; the attempts are described in "  # a failed budget's report, kept beside the output


@dataclass(frozen=True)
class CompileResult:
    path: Path
    manifest: Manifest
    notes: tuple[str, ...]
    recipe: Recipe


def compile(
    model: Any,
    target: str | TargetProfile = "host",
    output: str | os.PathLike = "edgekiln-out/model",
    recipe: Recipe | Mapping | str | os.PathLike | None = None,
    *,
    force: bool = False,
    example_inputs: Any = None,
    datasets: Mapping[str, Dataset] | None = None,
    progress: Callable[[str], None] | None = None,
) -> CompileResult:
    """Compile `model` (a Hugging Face folder, an .onnx file, or a torch.nn.Module with `example_inputs`)
    for `target` into the artifact folder `output`, as `recipe` says (the defaults: fp32 on the target's
    first preferred backend). `datasets` hands in-memory data to the recipe's roles (train, eval,
    calibration); the artifact's `recipe.toml` names them by fingerprint."""
    progress = progress or (lambda message: None)
    _check_arguments(output, force, target)
    if example_inputs is not None and isinstance(model, (str, os.PathLike)):
        raise CompileError(
            f"example_inputs are for a torch.nn.Module; {model} is a path, whose inputs come from the model itself",
            hint="drop example_inputs",
        )
    recipe = absolute_data(_with_datasets(_as_recipe(recipe), datasets or {}))
    out_dir = Path(output).expanduser().resolve()
    with output_lock(out_dir):  # held for the whole compile: a second one to the same -o fails at once
        check_output_folder(out_dir, force)
        profile = target if isinstance(target, TargetProfile) else load_profile(str(target))
        cache_root = Path(recipe.cache.dir).expanduser() if recipe.cache.dir else default_cache_dir()
        plan = plan_build(profile, recipe, cache_root)
        steps = (plan.lowering(), plan.quantizer(), plan.finishing())  # their own checks, before any work
        graph = tuple(make_pass(step.name, step.options) for step in recipe.passes)
        data = _DataRoles(recipe, datasets or {})
        job = _Job(profile, recipe, plan, data, out_dir, force, progress, graph)
        manifest, notes = _build(job, model, example_inputs, [step for step in steps if step])
    if manifest.quantization is not None:
        _warn_if_slower(out_dir)
    return CompileResult(out_dir, manifest, plan.notes + notes, recipe)


def _warn_if_slower(out_dir: Path) -> None:
    from edgekiln.runtime.reports.schema import read_reports

    from .passes.quantize import SlowerInt8Warning, slower_warning

    quantization = read_reports(out_dir).quantization
    message = None if quantization is None else slower_warning(quantization)
    if message:
        warnings.warn(message, SlowerInt8Warning, stacklevel=3)


def _as_recipe(recipe: Any) -> Recipe:
    """A Recipe, a mapping of its sections, or a recipe file (TOML, JSON, YAML)."""
    if recipe is None:
        return Recipe()
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, Mapping):
        return parse_recipe(dict(recipe), None)
    if isinstance(recipe, (str, os.PathLike)):
        return Recipe.from_file(recipe)
    raise CompileError(
        f"recipe: expected a Recipe, a mapping of its sections or a recipe file, found {type(recipe).__name__}"
    )


def _check_arguments(output: Any, force: Any, target: Any) -> None:
    if not isinstance(output, (str, os.PathLike)) or not str(output).strip():
        raise CompileError(f"output: expected the artifact folder's path, found {output!r}")
    if not isinstance(force, bool):
        raise CompileError(f"force: expected True or False, found {force!r}")
    if not isinstance(target, (str, os.PathLike, TargetProfile)):
        raise CompileError(f"target: expected a profile name, a .toml path or a TargetProfile, found {target!r}")


@dataclass(frozen=True)
class _Job:
    profile: TargetProfile
    recipe: Recipe
    plan: Plan
    data: _DataRoles
    out_dir: Path
    force: bool
    progress: Callable[[str], None]
    graph_passes: tuple[Pass, ...] = ()  # the recipe's [[passes]]


def _build(job: _Job, model: Any, example_inputs: Any, backend_passes: list[Pass]) -> tuple[Manifest, tuple]:
    """Prune (if asked), resolve the source, run the pass chain and write the artifact, in a build folder
    beside the output that is removed whatever happens."""
    recipe, out_dir = job.recipe, job.out_dir
    ours = re.compile(rf"\.{re.escape(out_dir.name)}\.build-[0-9a-f]{{8}}")  # exactly the name given below
    for stale in out_dir.parent.glob(f".{glob.escape(out_dir.name)}.build-*"):  # a killed build's (we hold the lock)
        if ours.fullmatch(stale.name) and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)
    build_dir = out_dir.parent / f".{out_dir.name}.build-{uuid.uuid4().hex[:8]}"
    build_dir.mkdir(parents=True)
    try:
        store = PassCache(job.plan.context.cache_root if recipe.cache.enabled else None, build_dir)
        reports, records = {}, []
        named = _name_of(model)
        if recipe.prune is not None:
            model, reports["pruning"], record = _prune_first(model, example_inputs, job, store)
            records.append(record)
        source = model if isinstance(model, ModelSource) else _source(model, recipe, build_dir, example_inputs)
        if recipe.prune is not None and named and not source.description.startswith(named):
            source = replace(source, description=f"{named} (pruned)")  # not the cache folder's name
        start = BuildState(source=source)
        if recipe.quantize.mode is not QuantMode.NONE:
            start = quantization_inputs(
                source, job.data.get("calibration"), recipe.quantize.calibration_samples, job.data.get("eval")
            )
            source = replace(source, notes=(*source.notes, *_calibration_notes(start, recipe)))
            start = replace(start, source=source)  # the artifact's notes.json says it too
        passes = _front_passes(source, recipe, job.graph_passes) + backend_passes
        state, chain = _run(passes, replace(start, reports=MappingProxyType(reports)), store, job.progress, out_dir)
        manifest = write_artifact(
            out_dir,
            state=state,
            records=records + chain,
            profile=job.profile,
            backend=job.plan.backend,
            recipe=_resolved(recipe, job.plan.backend),
            force=job.force,
        )
    finally:
        shutil.rmtree(build_dir, ignore_errors=True)
    return manifest, source.notes


def _calibration_notes(state: BuildState, recipe: Recipe) -> list[str]:
    """Fewer calibration examples than asked for is said: all the data's were used."""
    used, asked = state.calibration and state.calibration.samples, recipe.quantize.calibration_samples
    if not used or used >= asked:
        return []
    return [
        f"calibration data {state.calibration.source} has {used} examples: all used (--calibration-samples {asked})"
    ]


def _resolved(recipe: Recipe, backend: str) -> Recipe:
    """The recipe as built: the backend the target's preferences chose is written down, so that
    `--recipe ART/recipe.toml` rebuilds on the same backend even where another one is installed."""
    if recipe.backend.name is not None:
        return recipe
    return recipe.model_copy(update={"backend": recipe.backend.model_copy(update={"name": backend})})


class _DataRoles:
    """The recipe's data references resolved: a path spec for the loaders, or the in-memory Dataset."""

    def __init__(self, recipe: Recipe, datasets: Mapping[str, Dataset]) -> None:
        self._refs = recipe.data_refs()
        self._datasets = datasets
        self._options = recipe.data.reader_options

    def get(self, role: str) -> str | Dataset | None:
        ref = self._refs[role]
        in_memory = ref is not None and ref.startswith(MEMORY_PREFIX)
        options = (
            self._options
            if ref is None or in_memory or _is_table(ref)
            else {k: v for k, v in self._options.items() if k == "format"}
        )
        if ref is not None and options and not in_memory:
            return load_dataset(ref, **options, labels_optional=role == "calibration")  # (calibration: texts only)
        if ref is None or not ref.startswith(MEMORY_PREFIX):
            return ref
        dataset = self._datasets.get(role)
        if dataset is None or ref != MEMORY_PREFIX + dataset.fingerprint()[:16]:
            raise CompileError(
                f"the recipe's {role} data {ref!r} was an in-memory dataset of the Python API",
                hint=f"pass it again with datasets={{{role!r}: dataset}}, or put a file path in the recipe",
            )
        return dataset


_TABLES = (".tsv", ".tab", ".csv", ".jsonl")


def _is_table(ref: str) -> bool:
    """Data whose columns `--text-column`/`--label-column` name (a `.txt` of lines, CoNLL, an `.npz` or
    an image folder have none: their own readers take them as they are)."""
    path, _split = parse_spec(ref)
    return path.suffix.lower() in _TABLES or (path.is_dir() and not holds_images(path))


def _with_datasets(recipe: Recipe, datasets: Mapping[str, Dataset]) -> Recipe:
    unknown = sorted(set(datasets) - set(DATA_ROLES))
    if unknown:
        raise CompileError(f"unknown dataset role(s) {unknown}", hint=f"use {', '.join(DATA_ROLES)}")
    bad = [role for role, dataset in datasets.items() if not isinstance(dataset, Dataset)]
    if bad:
        raise CompileError(
            f"datasets[{bad[0]!r}] is a {type(datasets[bad[0]]).__name__}, expected a Dataset",
            hint="load one with edgekiln.compiler.data.load_dataset, or name a file in the recipe",
        )
    return (
        recipe.with_overrides(
            {DATA_PATHS[role]: MEMORY_PREFIX + dataset.fingerprint()[:16] for role, dataset in datasets.items()}
        )
        if datasets
        else recipe
    )


def absolute_data(recipe: Recipe) -> Recipe:
    """Data paths made absolute, so that the stored recipe rebuilds from any working folder."""
    updates = {}
    for role, ref in recipe.data_refs().items():
        if ref is None or ref.startswith(MEMORY_PREFIX):
            continue
        path, split = parse_spec(ref)
        if path.exists() and not path.is_absolute():
            updates[DATA_PATHS[role]] = str(path.resolve()) + (f":{split}" if split else "")
    weights = recipe.source.weights
    if weights is not None and not Path(weights).is_absolute() and Path(weights).expanduser().exists():  # timm
        updates["source.weights"] = str(Path(weights).expanduser().resolve())
    return recipe.with_overrides(updates) if updates else recipe


def _name_of(model: Any) -> str | None:
    """How a model given by path or id is named in the manifest's `source`."""
    if not isinstance(model, (str, os.PathLike)):
        return None
    return str(model) if is_timm(str(model)) else Path(model).expanduser().resolve().name


def _source(model: Any, recipe: Recipe, build_dir: Path, example_inputs: Any) -> ModelSource:
    spec = recipe.source
    return resolve_source(
        model,
        work_dir=build_dir,
        task=spec.task,
        pooling=spec.pooling,
        example_inputs=example_inputs,
        input_names=spec.input_names,
        output_names=spec.output_names,
        dynamic_axes=spec.dynamic_axes,
        image=spec.image,
        labels=spec.labels,
        input_shapes=spec.input_shapes,
        weights=spec.weights,
    )


def _prune_first(model, example_inputs, job: _Job, store: PassCache):
    """(the pruned model or folder, its report, its manifest record); widths rounded for the target."""
    prune = job.recipe.prune
    if prune.multiple_of is None:
        prune = prune.model_copy(update={"multiple_of": job.profile.prune_multiple})
    return prune_model(
        model,
        example_inputs,
        prune,
        job.recipe.recover,
        store=store,
        say=job.progress,
        source_recipe=job.recipe.source,
        data={"train": job.data.get("train"), "dev": job.data.get("eval"), "calibration": job.data.get("calibration")},
    )


def _run(passes: list[Pass], start: BuildState, store: PassCache, progress, out_dir: Path):
    try:
        return run_passes(passes, start, store, progress)
    except BudgetError as exc:  # keep the best attempts' report beside the (unwritten) output
        kept = out_dir.parent / f"{out_dir.name}.quantization-failed.json"
        kept.write_text(json.dumps(exc.report, indent=2))
        raise CompileError(f"{exc.message}{ATTEMPTS_NOTE}{kept}", hint=exc.hint) from None


def _front_passes(source: ModelSource, recipe: Recipe, graph: tuple[Pass, ...] = ()) -> list[Pass]:
    """Export (or check the given ONNX), optimise, and check the numerics against the reference; the
    recipe's own graph passes after that, checked against the reference once more."""
    export = ExportConfig(exporter=recipe.export.exporter, opset=recipe.export.opset)
    first: Pass = (
        ExportOnnx(export)
        if source.torch is not None
        else CheckOnnx(CheckOnnxConfig(input_shapes=recipe.source.input_shapes))
    )
    checked = [first, OrtOptimize(), VerifyFidelity(recipe.fidelity)]
    return checked + [*graph, VerifyFidelity(recipe.fidelity)] if graph else checked
