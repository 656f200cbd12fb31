"""From a recipe and a target to a backend and its passes, through the backend registry.

The rules that need the target profile or the registry live here once: which backend can do the
job, which precisions and quantization modes it has, which profile fields it needs, and its own
options (validated by the model its `BackendSpec` names).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from edgekiln.runtime.backends import BackendSpec, backend_names, backend_spec, is_builtin, plugin_problem
from edgekiln.runtime.backends.spec import load_object
from edgekiln.runtime.errors import BackendUnavailableError, EdgekilnError
from edgekiln.runtime.manifest import Precision
from edgekiln.targets import TargetProfile

from .errors import CompileError
from .passes.base import Pass
from .quantization.config import QuantMode
from .recipe import Recipe


@dataclass(frozen=True)
class BuildContext:
    """What a backend's factories see: the target, the whole recipe, the cache and its own options."""

    profile: TargetProfile
    recipe: Recipe
    cache_root: Path
    options: BaseModel | None


@dataclass(frozen=True)
class Plan:
    spec: BackendSpec
    context: BuildContext
    notes: tuple[str, ...]

    @property
    def backend(self) -> str:
        return self.spec.name

    def lowering(self) -> Pass | None:
        return None if self.spec.lowering is None else self._make(self.spec.lowering)

    def finishing(self) -> Pass | None:
        return None if self.spec.finishing is None else self._make(self.spec.finishing)

    def quantizer(self) -> Pass | None:
        mode = self.context.recipe.quantize.mode
        if mode is QuantMode.NONE:
            return None
        return self._make(self.spec.quantizers[mode.value].factory)

    def _make(self, factory: str) -> Pass | None:
        """The pass a backend's factory makes; a plugin's failure is named as the plugin's."""
        if is_builtin(self.spec.name):
            return load_object(factory)(self.context)
        try:
            return load_object(factory)(self.context)
        except EdgekilnError:
            raise
        except Exception as exc:
            raise CompileError(
                f"backend plugin {self.spec.name!r} failed to set up its pass ({factory}): {type(exc).__name__}: {exc}",
                hint="a fault of the plugin: report it to its authors",
            ) from None


def plan_build(profile: TargetProfile, recipe: Recipe, cache_root: Path) -> Plan:
    _check_target(profile, recipe)  # first: what the target cannot do, no backend's choice changes
    spec, notes = choose_backend(profile, recipe)
    options = _options(spec, recipe)
    return Plan(spec, BuildContext(profile, recipe, cache_root, options), tuple(notes))


def choose_backend(profile: TargetProfile, recipe: Recipe) -> tuple[BackendSpec, list[str]]:
    """The requested backend, else the target's first preferred one that can do the job."""
    requested = recipe.backend.name
    if requested is not None:
        spec = backend_spec(requested)
        problem = cannot_build(spec, profile, recipe)
        if problem is not None:
            raise CompileError(f"the {spec.name} backend {problem[0]}", hint=problem[1])
        notes = (
            []
            if requested in profile.preferred_backends
            else [f"{requested} is not among {profile.name}'s preferred backends"]
        )
        return spec, notes
    notes = []
    for name in profile.preferred_backends:
        try:
            spec = backend_spec(name)
        except BackendUnavailableError:
            notes.append(f"preferred backend {name} is not installed here")
            continue
        problem = cannot_build(spec, profile, recipe)
        if problem is None:
            return spec, notes
        notes.append(f"preferred backend {name} cannot do this job ({problem[0]}); trying the next")
    usable = [name for name in backend_names() if cannot_build(backend_spec(name), profile, recipe) is None]
    why = "".join(f" ({reason})" for reason in _unavailable(profile.preferred_backends)[:1])
    raise CompileError(
        f"none of {profile.name}'s preferred backends {list(profile.preferred_backends)} can do this job{why}",
        hint=f"pass --backend {usable[0]}" if usable else "compile without --quantize",
    )


def _unavailable(names) -> list[str]:
    """Why each of `names` is not a usable backend here: not installed, or its plugin set aside."""
    reasons = []
    for name in names:
        if name in backend_names():
            continue
        problem = plugin_problem(name)  # the plugin's own load error says more than "unknown"
        reasons.append(problem.message if problem else f"{name!r}: no backend by that name is installed here")
    return reasons


def _cpu_isa_problem(spec: BackendSpec, profile: TargetProfile, precision: Precision) -> tuple[str, str] | None:
    """A precision the backend runs on the CPU needs the target CPU's ISA for it: a profile's bf16 for its
    GPU (nvidia-cuda) does not make its AVX2 CPU run bf16. (Unlisted precisions: _check_target's refusal.)"""
    needs = spec.cpu_precision_isa.get(precision.value)
    if not needs or precision not in profile.precisions or profile.arch.value != "x86_64":
        return None
    if set(needs) & set(profile.isa):
        return None
    return (
        f"runs {precision.value} on the CPU, and {profile.name}'s CPU ISA {list(profile.isa)} has none of "
        f"{', '.join(needs)} (its {precision.value} is its accelerator's)",
        f"use --precision fp32, or a target whose CPU has {' or '.join(needs)}",
    )


def cannot_build(spec: BackendSpec, profile: TargetProfile, recipe: Recipe) -> tuple[str, str] | None:
    """Why `spec` cannot build `recipe` for `profile` (message, hint), or None."""
    accelerator = profile.accelerator.value
    if accelerator not in spec.accelerators:
        others = [name for name in backend_names() if accelerator in backend_spec(name).accelerators]
        return (
            f"does not run on {profile.name}'s accelerator ({accelerator}): it runs on "
            + " and ".join("the CPU" if name == "none" else name for name in spec.accelerators),
            f"use --backend {' or '.join(others)}" if others else "choose a target without an accelerator",
        )
    mode = recipe.quantize.mode
    if mode is not QuantMode.NONE:
        quantizer = spec.quantizers.get(mode.value)
        if quantizer is None:
            modes = ", ".join(spec.quantize_modes()) or "none: it compiles float models only"
            return (
                f"cannot run this quantization mode ({mode.value}; its modes: {modes})",
                f"use --backend {_first_with_mode(mode)}, or another --quantize mode",
            )
        if quantizer.needs_calibration and recipe.quantize.calibration is None:
            return (
                f"quantizes {mode.value} from calibration data",
                "pass --calibration DATA, or --backend onnxruntime for dynamic int8",
            )
    problem = _cpu_isa_problem(spec, profile, recipe.precision)
    if problem is not None:
        return problem
    if recipe.precision.value not in spec.precisions:
        return (
            f"does not compile {recipe.precision.value} (it compiles {', '.join(spec.precisions)})",
            "--precision bf16 is OpenVINO's float mode: use --backend openvino without --quantize"
            if recipe.precision is Precision.BF16 and Precision.BF16 in profile.precisions
            else "use --precision fp32",
        )
    missing = [field for field in spec.target_fields if getattr(profile, field, None) is None]
    if missing:
        return (
            f"needs {', '.join(missing)} in the target profile, which {profile.name} does not have",
            f"add a [{missing[0]}] table to the profile, or choose another --backend",
        )
    return None


def _first_with_mode(mode: QuantMode) -> str:
    names = [name for name in backend_names() if mode.value in backend_spec(name).quantizers]
    return " or ".join(names) if names else "onnxruntime"


def _check_target(profile: TargetProfile, recipe: Recipe) -> None:
    if Precision.FP32 not in profile.precisions:
        raise CompileError(
            f"target {profile.name} does not list fp32 among its precisions "
            f"{[p.value for p in profile.precisions]}; lower precisions come with quantization"
        )
    if recipe.quantize.mode is not QuantMode.NONE and Precision.INT8 not in profile.precisions:
        raise CompileError(f"target {profile.name} does not support int8", hint="compile without --quantize")
    if recipe.precision is Precision.BF16 and Precision.BF16 not in profile.precisions:
        raise CompileError(
            f"target {profile.name} does not list bf16 (it needs AVX-512 BF16 or AMX)",
            hint="use --target host on such a CPU, or a profile that lists bf16",
        )


def _options(spec: BackendSpec, recipe: Recipe) -> BaseModel | None:
    given = recipe.backend.options
    if spec.options is None:
        if given:
            raise CompileError(
                f"backend option(s) {sorted(given)} do not apply to the {spec.name} backend (it takes none)",
                hint="drop them, or choose the backend they belong to",
            )
        return None
    model: type[BaseModel] = load_object(spec.options)
    unknown = sorted(set(given) - set(model.model_fields))
    if unknown:
        raise CompileError(
            f"backend option(s) {unknown} do not apply to the {spec.name} backend",
            hint=f"its options: {', '.join(model.model_fields)}",
        )
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise CompileError(f"{spec.name} option `{where}`: {error['msg']}") from None
