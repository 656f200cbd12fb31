"""Typed pass results. Every pass that checks numerics writes a `FidelityReport`, every quantizer a
`QuantizationReport`, whatever the backend; the CLI summary, `inspect`, the HTML report and the
plots read these types, never a file name. Each report carries its `kind`, so `read_reports` finds
them in `reports/*.json` by what they are."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..manifest import REPORTS_DIR
from .files import report_files


class _Report(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FidelityRow(_Report):
    batch: int
    sequence: int | None
    max_abs_diff: float
    min_cosine: float
    argmax_agreement: float | None = None  # classifier outputs: share of rows whose top class agrees
    max_relative_error: float | None = None  # classifier outputs: max |diff| / the row's logit range


class FidelityReport(_Report):
    kind: Literal["fidelity"] = "fidelity"
    reference: str  # what the candidate was compared with
    candidate: str  # what was checked
    output_kind: Literal["classifier", "dense"]
    shapes: tuple[FidelityRow, ...]
    max_abs_diff: float
    min_cosine: float
    argmax_agreement: float | None = None
    max_relative_error: float | None = None
    thresholds: dict[str, float]
    passed: bool
    details: dict[str, Any] = {}  # the checking pass's own facts (OpenVINO version, TVM buckets, …)

    def summary(self) -> str:
        if self.output_kind == "classifier":
            line = (
                f"{self.candidate} vs {self.reference}: top-1 agreement {self.argmax_agreement:.1%}, "
                f"max error {self.max_relative_error:.2%} of the logit range (max abs diff "
                f"{self.max_abs_diff:.2e})"
            )
        else:
            line = (
                f"{self.candidate} vs {self.reference}: max abs diff {self.max_abs_diff:.2e}, "
                f"min cosine {self.min_cosine:.6f}"
            )
        if self.passed:
            return line
        limits = ", ".join(f"{key} {value:g}" for key, value in self.thresholds.items())
        return f"{line} -- OVER THE LIMITS ({limits}): check the accuracy with --eval-data before shipping it"


class LayerRow(_Report):
    node: str
    op: str
    int8: bool | None = None  # really runs in int8 (an integer kernel or a quantized input)
    sqnr_db: float | None = None
    activation_min: float | None = None
    activation_max: float | None = None
    weight_min: float | None = None
    weight_max: float | None = None
    kept_float: bool = False


class QuantAttempt(_Report):
    mode: str
    accuracy_drop: float | None = None
    latency_ms: float | None = None
    excluded_nodes: tuple[str, ...] = ()
    steps: tuple[dict[str, Any], ...] = ()
    agreement: float | None = None
    bias_correction: dict[str, Any] | None = None  # static int8 of a CNN: {"layers", "max_shift"}
    weight_rounding: dict[str, Any] | None = None  # static int8 of a CNN, GPTQ codes: {"layers", "changed"}
    input_padding: dict[str, Any] | None = None  # static int8 of a CNN, ONNX Runtime: {"node", "channels"}


class QuantizationReport(_Report):
    kind: Literal["quantization"] = "quantization"
    backend: str
    method: str  # "onnxruntime" (QDQ / integer ops) or "nncf"
    requested: str
    chosen: str  # the mode kept, or "float" when int8 was not faster (auto)
    budget_points: float | None = None
    metric: str | None = None
    float_metric: float | None = None
    accuracy_drop: float | None = None
    float_ms: float
    int8_ms: float | None = None
    speedup: float
    int8_slower_than_float: bool
    excluded_nodes: tuple[str, ...] = ()
    bench: dict[str, int]
    attempts: tuple[QuantAttempt, ...]
    layers: tuple[LayerRow, ...] = ()
    fidelity: FidelityReport | None = None  # the kept model against the float one

    def summary(self) -> str:
        drop = "n/a" if self.accuracy_drop is None else f"{round(self.accuracy_drop, 2) + 0.0:.2f} points"  # no -0.00
        slower = " (int8 was slower than float here)" if self.int8_slower_than_float else ""
        return (
            f"quantization ({self.method}): kept {self.chosen}, accuracy drop {drop}, speed-up "
            f"{self.speedup:.2f}x over float{slower}"
        )


_KINDS: dict[str, type[_Report]] = {"fidelity": FidelityReport, "quantization": QuantizationReport}


@dataclass
class Reports:
    """An artifact's typed reports: by pass name, in the order the passes ran."""

    fidelity: dict[str, FidelityReport] = field(default_factory=dict)
    quantization: QuantizationReport | None = None
    other: dict[str, dict] = field(default_factory=dict)  # untyped reports (pruning, benchmark, notes)

    def built_fidelity(self) -> FidelityReport | None:
        """The fidelity of what was built: the quantized model's, else the last check's."""
        if self.quantization is not None and self.quantization.fidelity is not None:
            return self.quantization.fidelity
        return next(reversed(self.fidelity.values()), None)


def parse_report(raw: Any) -> _Report | dict:
    """A typed report where `raw` says its kind, else `raw` itself."""
    kind = raw.get("kind") if isinstance(raw, dict) else None
    model = _KINDS.get(kind) if isinstance(kind, str) else None
    return raw if model is None else model.model_validate(raw)


def read_reports(folder: Path, order: list[str] | None = None) -> Reports:
    """Every `reports/*.json` of an artifact, typed by kind; `order` lists pass names as they ran."""
    found: dict[str, Any] = {}
    for path in report_files(Path(folder) / REPORTS_DIR):
        try:
            found[path.stem] = parse_report(json.loads(path.read_text()))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValidationError):
            continue  # a report is for people; a damaged one must not stop the artifact from loading
    ranked = sorted(found, key=lambda name: (order or []).index(name) if name in (order or []) else len(found))
    reports = Reports()
    for name in ranked:
        value = found[name]
        if isinstance(value, FidelityReport):
            reports.fidelity[name] = value
        elif isinstance(value, QuantizationReport):
            reports.quantization = value
        else:
            reports.other[name] = value
    return reports
