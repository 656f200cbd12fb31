"""A build, written down: the typed, versioned `Recipe` that `compile()` carries out.

A recipe holds everything that decides what an artifact computes — task, export, pruning, quantization,
backend and its own options, precision, fidelity limits — and nothing about where it is written.
It reads from and writes to TOML/JSON/YAML, every artifact stores the one it was built from
(`recipe.toml`), and `edgekiln compile MODEL --recipe ART/recipe.toml --target T` rebuilds the same artifact.
Rules that involve only the recipe live here, as validators; rules that need the target profile or
the backend registry live in `planning.py`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import to_jsonable_python

from edgekiln.runtime.images.spec import ImagePreprocessSpec
from edgekiln.runtime.manifest import BackendName, Precision, Task

from .data.types import DataFormat
from .errors import CompileError
from .fidelity import FidelityConfig
from .input_shapes import Dim
from .passes.export_onnx import Exporter
from .pruning.config import PruneConfig, RecoveryConfig
from .quantization.config import CalibrationMethod, QuantMode
from .sources.wrappers import Pooling

RECIPE_VERSION = 1
RECIPE_FILE = "recipe.toml"
MEMORY_PREFIX = "memory:"  # a dataset handed to the Python API, named by its fingerprint


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceRecipe(_Section):
    task: Task | None = Field(default=None, description="None: detected from the model")
    pooling: Pooling | None = Field(default=None, description="bare encoders: None means the model's own")
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] | None = None
    dynamic_axes: dict[str, dict[int, str]] | None = None
    image: ImagePreprocessSpec | None = Field(
        default=None, description="a torch module's image preprocessing (an image classifier)"
    )
    labels: tuple[str, ...] | None = Field(default=None, description="a torch module's class names, in output order")
    weights: str | None = Field(default=None, description="a timm:NAME model's weights file (.safetensors, .pth)")
    input_shapes: dict[str, tuple[Dim, ...]] | None = Field(
        default=None,
        description="raw-tensor models: per input, each dimension a size or a range "
        "'MIN..MAX:MULTIPLE'; None: the model's own shapes",
    )


class ExportRecipe(_Section):
    exporter: Exporter = Exporter.AUTO
    opset: int = Field(default=18, ge=7, le=25)


class DataRecipe(_Section):
    """Labelled data, as PATH[:SPLIT]: `train` scores and recovers pruning, `eval` holds accuracy budgets."""

    train: str | None = None
    eval: str | None = None
    format: DataFormat | None = Field(
        default=None,
        description="force a reader for every data file (train, eval, "
        "calibration); None: by extension, then by content",
    )
    text_column: str | None = Field(default=None, description="of TSV/CSV/JSONL data; None: sentence, text, …")
    label_column: str | None = Field(default=None, description="None: label, labels, class, …")

    @property
    def reader_options(self) -> dict[str, Any]:
        """The load_dataset keywords the recipe sets (a forced format, named columns)."""
        options = {"format": self.format, "text_column": self.text_column, "label_column": self.label_column}
        return {key: value for key, value in options.items() if value is not None}


class QuantizeRecipe(_Section):
    mode: QuantMode = QuantMode.NONE
    calibration: str | None = Field(default=None, description="PATH[:SPLIT] or a .txt of lines")
    calibration_samples: int = Field(default=128, ge=1)
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX
    accuracy_budget: float | None = Field(default=None, ge=0, description="allowed drop in points")


class BackendRecipe(_Section):
    name: BackendName | None = Field(
        default=None, description="None: the target's first preferred backend that can do the job"
    )
    # The backend's own settings: opaque here, validated by the model its BackendSpec names.
    options: dict[str, Any] = Field(default_factory=dict)


class CacheRecipe(_Section):
    enabled: bool = True
    dir: str | None = Field(default=None, description="None: $EDGEKILN_CACHE or ~/.cache/edgekiln")


class PassStep(_Section):
    """A registered graph pass (a plugin's, through the `edgekiln.passes` entry point) and its options,
    validated by the pass's own Config."""

    name: str = Field(min_length=1)
    options: dict[str, Any] = Field(default_factory=dict)


class Recipe(_Section):
    recipe_version: int = RECIPE_VERSION
    source: SourceRecipe = SourceRecipe()
    export: ExportRecipe = ExportRecipe()
    data: DataRecipe = DataRecipe()
    prune: PruneConfig | None = None
    recover: RecoveryConfig | None = None
    quantize: QuantizeRecipe = QuantizeRecipe()
    backend: BackendRecipe = BackendRecipe()
    passes: tuple[PassStep, ...] = Field(
        default=(),
        description="graph passes run in order after ONNX Runtime's optimisation and before the backend's "
        "lowering; the result is checked against the source again",
    )
    precision: Precision = Precision.FP32
    fidelity: FidelityConfig = FidelityConfig()
    cache: CacheRecipe = CacheRecipe()

    @model_validator(mode="wrap")
    @classmethod
    def _one_error(cls, data: Any, handler) -> Recipe:
        """Recipe(...), model_validate and the files alike: one CompileError naming the setting."""
        try:
            return handler(data)
        except ValidationError as exc:
            raise recipe_error(exc) from None

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if self.recipe_version > RECIPE_VERSION:
            raise CompileError(
                f"recipe version {self.recipe_version} is newer than this edgekiln reads ({RECIPE_VERSION})",
                hint="upgrade edgekiln: pip install -U edgekiln",
            )
        if self.recover is not None and self.prune is None:
            raise CompileError("--recover fine-tunes after pruning", hint="pass --prune-flops (or -heads/-ffn) with it")
        quantize = self.quantize
        tensors = quantize.calibration is not None and _tensor_data(quantize.calibration)
        if quantize.accuracy_budget is not None and (
            quantize.mode is QuantMode.NONE or (self.data.eval is None and not tensors)
        ):
            raise CompileError(
                "--accuracy-budget applies to quantization and needs labelled data",
                hint="pass --quantize and --eval-data DEV with it",
            )
        if quantize.mode is QuantMode.STATIC and quantize.calibration is None:
            raise CompileError("--quantize static needs calibration data", hint="pass --calibration DATA")
        if self.precision not in (Precision.FP32, Precision.BF16):
            raise CompileError(
                f"precision {self.precision.value} is not a float precision edgekiln compiles",
                hint="int8 comes with --quantize; for reduced float use --precision bf16 (OpenVINO)",
            )
        if self.precision is Precision.BF16 and quantize.mode is not QuantMode.NONE:
            raise CompileError(
                "--precision bf16 is a float mode; it does not combine with --quantize", hint="drop one of the two"
            )
        if self.backend.options and self.backend.name is None:
            raise CompileError(
                f"backend options {sorted(self.backend.options)} need a backend", hint="pass --backend NAME with them"
            )
        return self

    # --- building and overriding ------------------------------------------------------------------
    @classmethod
    def from_flags(cls, base: Recipe | None = None, **flags: Any) -> Recipe:
        """`base` (or the defaults) with the settings named as the CLI's flags (see FLAGS); None skips a flag."""
        unknown = sorted(set(flags) - set(FLAGS))
        if unknown:
            raise CompileError(f"unknown recipe setting(s) {unknown}", hint=f"use: {', '.join(sorted(FLAGS))}")
        return (base or cls()).with_overrides({FLAGS[k]: v for k, v in flags.items() if v is not None})

    def with_overrides(self, updates: Mapping[str, Any]) -> Recipe:
        """A copy with dotted paths ("quantize.mode", "backend.options.tune_trials") set, validated again.
        A table (a dict or a typed section) is merged into what is there; any other value replaces it."""
        data = self.model_dump(mode="json", exclude_none=True)
        for path, value in updates.items():
            *parents, leaf = path.split(".")
            node = data
            for part in parents:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise CompileError(f"recipe setting {path!r} is not inside a section")
            if isinstance(value, BaseModel):
                value = value.model_dump(mode="json", exclude_none=True)
            value = to_jsonable_python(value)  # tuples become lists, as they read back from a file
            if isinstance(value, dict) and isinstance(node.get(leaf), dict):
                value = {**node[leaf], **value}
            node[leaf] = value
        return parse_recipe(data, None)

    # --- files --------------------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> Recipe:
        path = Path(path)
        if path.suffix.lower() not in (".toml", ".json", ".yaml", ".yml"):
            raise CompileError(f"cannot tell the recipe format of {path.name}", hint="use a .toml, .json or .yaml file")
        if not path.is_file():
            raise CompileError(
                f"recipe file {path} does not exist",
                hint="pass the recipe.toml of an artifact, or one written with --save-recipe",
            )
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise CompileError(f"cannot read recipe {path}: {exc}") from None
        return parse_recipe(_parse_text(text, path), str(path))

    def to_toml(self) -> str:
        import tomli_w

        data = self.model_dump(mode="json", exclude_none=True)
        if not data["passes"]:  # absent rather than empty: older edgekiln reads the recipe as before
            del data["passes"]
        return tomli_w.dumps(data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".json":
            text = json.dumps(self.model_dump(mode="json", exclude_none=True), indent=2)
        elif suffix in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)
        elif suffix == ".toml":
            text = self.to_toml()
        else:
            raise CompileError(f"cannot tell the recipe format of {path.name}", hint="name it .toml, .json or .yaml")
        try:
            path.write_text(text)
        except OSError as exc:
            raise CompileError(f"cannot write recipe {path}: {exc.strerror or exc}") from None
        return path

    def data_refs(self) -> dict[str, str | None]:
        """Each data role's reference (PATH[:SPLIT], or memory:FINGERPRINT), as DATA_PATHS places it."""
        return {role: getattr(getattr(self, section), field) for role, (section, field) in _DATA_FIELDS.items()}


# Data role -> its recipe path: training and eval data in [data], calibration with [quantize].
DATA_PATHS = {"train": "data.train", "eval": "data.eval", "calibration": "quantize.calibration"}
_DATA_FIELDS = {role: tuple(path.split(".")) for role, path in DATA_PATHS.items()}

# CLI flag (and Python keyword) -> recipe path. The one table that maps flat settings onto the recipe.
FLAGS = {
    "task": "source.task",
    "pooling": "source.pooling",
    "input_names": "source.input_names",
    "output_names": "source.output_names",
    "dynamic_axes": "source.dynamic_axes",
    "image": "source.image",
    "labels": "source.labels",
    "input_shapes": "source.input_shapes",
    "weights": "source.weights",
    "exporter": "export.exporter",
    "opset": "export.opset",
    "train_data": "data.train",
    "data": "data.train",
    "eval_data": "data.eval",
    "data_format": "data.format",
    "text_column": "data.text_column",
    "label_column": "data.label_column",
    "prune": "prune",
    "prune_heads": "prune.heads",
    "prune_ffn": "prune.ffn",
    "prune_flops": "prune.flops",
    "prune_importance": "prune.importance",
    "recover": "recover",
    "recover_epochs": "recover.epochs",
    "recover_examples": "recover.max_train_examples",
    "recover_lora": "recover.lora",
    "quantize": "quantize.mode",
    "calibration": "quantize.calibration",
    "calibration_samples": "quantize.calibration_samples",
    "calibration_method": "quantize.calibration_method",
    "accuracy_budget": "quantize.accuracy_budget",
    "backend": "backend.name",
    "backend_options": "backend.options",
    "tune_trials": "backend.options.tune_trials",
    "tune_minutes": "backend.options.tune_minutes",
    "tune_remote": "backend.options.tune_remote",
    "sequence_buckets": "backend.options.sequence_buckets",
    "precision": "precision",
    "fidelity": "fidelity",
    "cache": "cache.enabled",
    "cache_dir": "cache.dir",
}


def parse_recipe(data: Any, where: str | None) -> Recipe:
    """A validated Recipe from parsed data; `where` names the file it came from (None: flags or keywords)."""
    prefix = f"recipe {where}: " if where else ""
    if not isinstance(data, dict):
        raise CompileError(f"{prefix}found a {type(data).__name__}, expected a table of sections")
    try:
        return Recipe.model_validate(data)
    except CompileError as exc:
        raise CompileError(prefix + exc.message, hint=exc.hint) from None


def recipe_error(exc: ValidationError) -> CompileError:
    """pydantic's report, as one line naming the setting."""
    error = exc.errors()[0]
    place = ".".join(str(part) for part in error["loc"]) or "(top level)"
    if error["type"] == "extra_forbidden":
        what = f"unknown setting `{place}`"
    else:
        what = f"invalid `{place}` {error.get('input')!r}: {error['msg']}"
    return CompileError(what, hint="see `edgekiln compile --help` and the README's recipe section")


def _parse_text(text: str, path: Path) -> Any:
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception as exc:  # tomllib, json and yaml each raise their own error types
        raise CompileError(f"recipe {path} is not valid {suffix[1:].upper()}: {str(exc).splitlines()[0]}") from None


def _tensor_data(spec: str) -> bool:
    """.npz calibration tensors double as the eval set of a raw-tensor model's budget."""
    from .quantization.tensors import is_tensor_data

    return is_tensor_data(spec)
