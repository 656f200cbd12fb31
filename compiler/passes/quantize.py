"""Post-training int8 quantization with ONNX Runtime, held to an accuracy budget and to speed.

Each candidate mode (dynamic, static) is quantized; if its drop on the eval data exceeds the
budget, the least accurate layers go back to float until the budget holds (quantization/fallback.py).
Candidates are timed against the float model side by side; `auto` keeps the fastest one within budget, and the float model when int8 is not faster.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from edgekiln.runtime.cpus import available_cpus
from edgekiln.runtime.hashing import sha256_json
from edgekiln.runtime.reports.schema import QuantizationReport

from ..errors import CompileError
from ..fidelity import int8_fidelity
from ..graph_io import refuse_quantized
from ..onnx_external import copy_compact, remove_model
from ..quantization.bias_correction import correct_biases
from ..quantization.config import CalibrationMethod, IntType, QuantizeConfig, QuantMode, types_for_profile
from ..quantization.conv_ops import CNN_OP_TYPES, static_op_types
from ..quantization.evaluation import Evaluator, Score, bench_point, latency_ms, points_lost
from ..quantization.fallback import ranked_layers, within, within_budget
from ..quantization.input_channels import pad_input_channels
from ..quantization.ort_quantize import quantizable_nodes, quantize_model
from ..quantization.sensitivity import layer_report
from ..quantization.tensors import make_evaluator
from ..quantization.weight_rounding import round_weights
from .base import MODEL_FILE, BuildState, Pass, PassConfig
from .registry import register_pass
from .verify_fidelity import ort_runner


class QuantizePassConfig(PassConfig):
    mode: QuantMode
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX
    accuracy_budget: float | None = Field(default=None, ge=0, description="allowed drop in points")
    activation_type: IntType = IntType.UINT8
    weight_type: IntType = IntType.INT8
    reduce_range: bool = False
    per_channel: bool = True
    bias_correction: bool = True  # static int8 of a convolutional graph (bias_correction.py)
    weight_rounding: bool = True  # ... and its conv weights' codes chosen by GPTQ (weight_rounding.py)
    bench_sequence: int = Field(default=128, ge=1)
    threads: int = Field(default=1, ge=1)


class BudgetError(CompileError):
    """No quantized candidate met the accuracy budget; `report` holds the best attempt."""

    def __init__(self, message: str, report: dict) -> None:
        super().__init__(message, hint="raise --accuracy-budget, add calibration data, or compile without --quantize")
        self.report = report


@dataclass
class Attempt:
    mode: QuantMode
    path: Path
    exclude: tuple[str, ...]
    score: Score | None
    drop: float | None  # points lost against float on the eval data; None without eval data
    steps: list[dict] = field(default_factory=list)
    latency_ms: float | None = None
    bias_correction: dict | None = None
    weight_rounding: dict | None = None
    input_padding: dict | None = None

    def row(self, float_score: Score | None) -> dict:
        return {
            "mode": self.mode.value,
            "accuracy_drop": self.drop,
            "latency_ms": self.latency_ms,
            "excluded_nodes": list(self.exclude),
            "steps": self.steps,
            "agreement": None if float_score is None else Evaluator.agreement(float_score, self.score),
            "bias_correction": self.bias_correction,
            "weight_rounding": self.weight_rounding,
            "input_padding": self.input_padding,
        }


@register_pass
class QuantizeOrt(Pass):
    name = "quantize"
    version = 8  # 2: static int8 of a convolutional graph quantizes its activations, Adds and pools too
    # 3: ... and its Conv/Gemm biases are corrected empirically (bias_correction.py)
    # 4: ... after its conv weights' int8 codes are chosen by GPTQ (weight_rounding.py)
    # 5: static int8 leaves a Gemm/MatMul graph output (logits) in float (ort_quantize.float_outputs)
    # 6: ... and pads an RGB stem's input channels to 4 for ONNX Runtime's fast kernels (input_channels.py)
    # 7: a Conv whose activation the quantizer folds has an SQNR row (the fallback ranked such layers last),
    # and the fallback never returns every layer to float
    # 8: the report names a sequence length only for inputs that have one
    Config = QuantizePassConfig
    changes_model = True

    def check_preconditions(self, state: BuildState) -> None:
        super().check_preconditions(state)
        if self.config.mode is QuantMode.NONE:
            raise CompileError("internal: the quantize pass was scheduled with mode none")
        if self.config.mode is QuantMode.STATIC and state.calibration is None:
            raise CompileError("--quantize static needs calibration data", hint="pass --calibration DATA")
        if self.config.accuracy_budget is not None and state.evaluation is None:
            raise CompileError("--accuracy-budget needs labelled data to measure the drop", hint="pass --eval-data DEV")
        refuse_quantized(state.model_path, state.source.description)
        histogram = self.config.calibration_method is not CalibrationMethod.MINMAX and state.calibration is not None
        if histogram and state.source.tokenizer is not None:
            raise CompileError(  # ONNX Runtime's histograms take one shape; text batches vary in length
                f"--calibration-method {self.config.calibration_method.value} needs inputs of one shape; "
                "a text model's vary in length",
                hint="use --calibration-method minmax (the default) for text models",
            )

    def input_key(self, state: BuildState) -> str:
        return sha256_json(
            {
                "model": state.model_sha256(),
                "calibration": state.calibration and state.calibration.sha256,
                "evaluation": state.evaluation and state.evaluation.fingerprint(),
            }
        )

    def run(self, state: BuildState, out_dir: Path) -> dict[str, Any]:
        float_path = state.model_path
        nodes = quantizable_nodes(float_path, QuantizeConfig(mode=QuantMode.DYNAMIC).op_types)
        if not nodes:
            raise CompileError(
                f"{state.source.description} has no quantizable layers (MatMul, Gemm or Conv)",
                hint="compile without --quantize",
            )
        self._static_ops = static_op_types(float_path, QuantizeConfig(mode=QuantMode.STATIC).op_types)
        evaluator = None if state.evaluation is None else make_evaluator(state, self.config.threads)
        float_score = evaluator.score(float_path) if evaluator else None
        attempts = [self._attempt(mode, state, out_dir, nodes, evaluator, float_score) for mode in self._modes(state)]
        feeds, bench = bench_point(state.source, self.config.bench_sequence, self.config.threads)
        float_ms, *timings = latency_ms([float_path] + [a.path for a in attempts], feeds, self.config.threads)
        for attempt, timing in zip(attempts, timings):
            attempt.latency_ms = timing
        report = {
            "requested": self.config.mode.value,
            "budget_points": self.config.accuracy_budget,
            "metric": evaluator.metric if evaluator else None,
            "float_metric": float_score.value if float_score else None,
            "float_ms": float_ms,
            "bench": bench,
            "attempts": [attempt.row(float_score) for attempt in attempts],
        }
        chosen = self._choose(attempts, float_ms, report)
        # int8 weights are a quarter of float ones: a model past 2 GB becomes one file again where it fits
        copy_compact(chosen.path if chosen else float_path, out_dir / MODEL_FILE)
        report["layers"] = (
            []
            if chosen is None
            else [
                {**row, "kept_float": row["node"] in chosen.exclude}
                for row in layer_report(float_path, chosen.path, nodes, state.calibration, (feeds,))
            ]
        )
        report["fidelity"] = (
            None
            if chosen is None
            else int8_fidelity(
                state,
                ort_runner(float_path, optimize=True),
                ort_runner(out_dir / MODEL_FILE, optimize=True),
                f"int8 ({chosen.mode.value})",
            )
        )
        for attempt in attempts:
            remove_model(attempt.path)
        return QuantizationReport(backend="onnxruntime", method="onnxruntime", **report).model_dump(mode="json")

    def _modes(self, state: BuildState) -> list[QuantMode]:
        if self.config.mode is QuantMode.AUTO:
            return [QuantMode.DYNAMIC] + ([QuantMode.STATIC] if state.calibration is not None else [])
        return [self.config.mode]

    def _config(self, mode: QuantMode, exclude: tuple[str, ...]) -> QuantizeConfig:
        c = self.config
        return QuantizeConfig(
            mode=mode,
            op_types=self._static_ops if mode is QuantMode.STATIC else QuantizeConfig(mode=mode).op_types,
            activation_type=c.activation_type,
            weight_type=c.weight_type,
            reduce_range=c.reduce_range,
            per_channel=c.per_channel,
            calibration_method=c.calibration_method,
            exclude=exclude,
        )

    def _attempt(self, mode, state, out_dir, nodes, evaluator, float_score) -> Attempt:
        def build(exclude: tuple[str, ...]) -> Attempt:
            path = out_dir / f"{mode.value}-{len(exclude)}.onnx"
            quantize_model(state.model_path, path, self._config(mode, exclude), state.calibration, out_dir)
            rounded, corrected, padded = self._refine(mode, state, path)
            score = evaluator.score(path) if evaluator else None
            drop = points_lost(float_score, score)
            return Attempt(
                mode,
                path,
                exclude,
                score,
                drop,
                bias_correction=corrected,
                weight_rounding=rounded,
                input_padding=padded,
            )

        attempt, steps = within_budget(
            build,
            lambda first: ranked_layers(state, first.path, nodes),
            self._fits,
            lambda superseded: remove_model(superseded.path),
        )
        attempt.steps = steps
        return attempt

    def _refine(self, mode: QuantMode, state: BuildState, path: Path) -> tuple[dict | None, ...]:
        """Static int8 of a convolutional graph: conv weight codes chosen by GPTQ, then per-layer mean
        shifts folded into the int32 biases (each step on when its config says so), then the stem's
        input channels padded to 4 (same outputs, faster kernels)."""
        if mode is not QuantMode.STATIC or self._static_ops != CNN_OP_TYPES:
            return None, None, None
        feeds = state.calibration.feeds
        rounded = round_weights(state.model_path, path, feeds).row() if self.config.weight_rounding else None
        corrected = correct_biases(state.model_path, path, feeds).row() if self.config.bias_correction else None
        padded = pad_input_channels(path)
        return rounded, corrected, padded and padded.row()

    def _fits(self, attempt: Attempt) -> bool:
        return within(self.config.accuracy_budget, attempt.drop)

    def _choose(self, attempts: list[Attempt], float_ms: float, report: dict) -> Attempt | None:
        fitting = [a for a in attempts if self._fits(a)]
        if not fitting:
            drops = [step["accuracy_drop"] for a in attempts for step in (a.steps or [{"accuracy_drop": a.drop}])]
            best_drop = min(drop for drop in drops if drop is not None)
            raise BudgetError(
                f"no int8 model stays within the accuracy budget of {self.config.accuracy_budget} "
                f"points (smallest drop {best_drop:.2f} points, of every attempt; with every layer in "
                "float it would be the float model)",
                report,
            )
        best = min(fitting, key=lambda a: a.latency_ms)
        report["int8_slower_than_float"] = best.latency_ms >= float_ms
        if report["int8_slower_than_float"] and self.config.mode is QuantMode.AUTO:
            report.update(chosen="float", accuracy_drop=0.0, speedup=1.0, excluded_nodes=[], int8_ms=best.latency_ms)
            return None
        report.update(
            chosen=best.mode.value,
            accuracy_drop=best.drop,
            speedup=round(float_ms / best.latency_ms, 3),
            excluded_nodes=list(best.exclude),
            int8_ms=best.latency_ms,
        )
        return best


class SlowerInt8Warning(UserWarning):
    """The int8 model kept runs slower than float (auto-selection's candidates do not say it)."""


def slower_warning(report: QuantizationReport) -> str | None:
    """Said loudly after the build (cached or not) when the int8 kept runs slower than float: what the
    user asked for is worse than nothing (ConvInteger: dynamic int8 of a CNN, 10x slower)."""
    if not report.int8_slower_than_float or report.chosen == "float":
        return None
    convolutions = any(row.op == "Conv" for row in report.layers)
    advice = (
        "convolutions run as ConvInteger in dynamic int8: use --quantize static --calibration DATA"
        if report.chosen == QuantMode.DYNAMIC.value and convolutions
        else "compile without --quantize, or with --quantize auto (which then keeps float)"
    )
    return f"int8 ({report.chosen}) runs at {report.speedup:.2f}x the float model's speed on this machine; {advice}"


def bench_settings(profile) -> dict:
    """Where a quantizer times float against int8: the target's longest sequence bucket and its threads."""
    return {"bench_sequence": profile.sequence_buckets[-1], "threads": min(profile.threads, available_cpus())}


def make_quantizer(context) -> QuantizeOrt:
    """The ONNX Runtime quantize pass for `context` (planning.BuildContext): the target's integer types."""
    recipe, profile = context.recipe.quantize, context.profile
    return QuantizeOrt(
        QuantizePassConfig(
            mode=recipe.mode,
            calibration_method=recipe.calibration_method,
            accuracy_budget=recipe.accuracy_budget,
            **bench_settings(profile),
            **types_for_profile(profile),
        )
    )
