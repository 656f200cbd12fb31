"""int8 for the OpenVINO backend. A CNN whose weights are inline goes through ONNX Runtime's QDQ graph
with GPTQ codes (quantization/openvino_qdq.py), under an accuracy budget with the same per-layer fallback
as ONNX Runtime's (quantization/fallback.py); any other model through NNCF's post-training quantization
of the IR with the same calibration data, under a budget NNCF's accuracy control, which returns the
layers that cost the most accuracy to float until the drop fits. Speed is measured against the float IR."""

from __future__ import annotations

import contextlib
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from edgekiln.runtime.backends.openvino import compile_ir
from edgekiln.runtime.hashing import sha256_file, sha256_json
from edgekiln.runtime.manifest import Task
from edgekiln.runtime.reports.schema import LayerRow, QuantizationReport

from ..errors import CompileError
from ..fidelity import int8_fidelity
from ..graph_io import refuse_quantized
from ..onnx_external import data_files
from ..quantization.config import CalibrationMethod, IntType, QuantizeConfig, QuantMode, types_for_profile
from ..quantization.conv_ops import CNN_OP_TYPES, is_convolutional_ir, static_op_types
from ..quantization.evaluation import Evaluator, Score, bench_point, latency_ms, points_lost
from ..quantization.fallback import ranked_layers, within, within_budget
from ..quantization.openvino_layers import kept_float_layers, openvino_layer_report
from ..quantization.openvino_qdq import qdq_int8_ir
from ..quantization.ort_quantize import quantizable_nodes
from ..quantization.sensitivity import layer_report
from ..quantization.tensors import make_evaluator
from ..vendor_telemetry import decline_unless_opted_in
from .base import BuildState, Pass, PassConfig
from .lower_openvino import IR_MODEL, IR_WEIGHTS, bound_ranges
from .quantize import BudgetError, bench_settings
from .registry import register_pass

CANDIDATE = {"nncf": "int8 (NNCF)", "onnxruntime-qdq": "int8 (QDQ, GPTQ codes)"}


@dataclass
class Int8:
    """An int8 IR and how it was made."""

    model: Any  # openvino.Model
    plain: Any  # NNCF: its quantization of the same model with no layer returned to float (else None)
    method: str  # a key of CANDIDATE
    exclude: tuple[str, ...] = ()  # ONNX nodes kept in float (the QDQ route)
    drop: float | None = None  # points lost against float; None without eval data
    score: Score | None = None
    refined: dict = field(default_factory=dict)  # the QDQ route's weight rounding and bias correction rows
    onnx: Path | None = None  # the QDQ route's graph, until the report is written
    steps: list[dict] | None = None


class QuantizeOpenVinoConfig(PassConfig):
    mode: QuantMode
    accuracy_budget: float | None = Field(default=None, ge=0, description="allowed drop in points")
    bench_sequence: int = Field(default=128, ge=1)
    threads: int = Field(default=1, ge=1)
    # the target's int8 dot products do not saturate (VNNI, AMX, ARM): all weights keep the full 8-bit range
    full_range_weights: bool = False
    # a CNN (with or without a budget): ONNX Runtime's QDQ graph, GPTQ codes and corrected biases, as IR
    weight_rounding: bool = True
    activation_type: IntType = IntType.UINT8  # of that QDQ graph: the ISA's (types_for_profile)
    calibration_method: CalibrationMethod = CalibrationMethod.MINMAX  # of that QDQ graph (NNCF: its own)


@register_pass
class QuantizeOpenVino(Pass):
    name = "quantize_openvino"
    version = 9  # 2: per-layer SQNR rows and the layers returned to float; 3: no SmoothQuant under a budget
    # 4: a convolutional image model is quantized as a CNN, not as a transformer
    # 5: a CNN gets NNCF's full bias correction, and no overflow fix where the target does not saturate
    # 6: a CNN without a budget is quantized as a QDQ graph with GPTQ codes (openvino_qdq.py)
    # 7: ... and with a budget too, its least accurate layers returned to float (fallback.py)
    # 8: a Conv whose activation the quantizer folds has an SQNR row; never every layer in float
    # 9: the report names a sequence length only for inputs that have one
    Config = QuantizeOpenVinoConfig
    changes_model = False
    lowers_to = (IR_MODEL, IR_WEIGHTS)

    def check_preconditions(self, state: BuildState) -> None:
        if not state.lowered or state.lowered[0].suffix != ".xml":
            raise CompileError("internal: quantize_openvino needs an OpenVINO IR; run lower_openvino first")
        if self.config.mode is QuantMode.DYNAMIC:
            raise CompileError(
                "OpenVINO int8 is static; there is no dynamic mode",
                hint="use --quantize static or auto with --calibration DATA",
            )
        if state.calibration is None:
            raise CompileError("OpenVINO int8 needs calibration data", hint="pass --calibration DATA")
        refuse_quantized(state.model_path, state.source.description)
        if self.config.accuracy_budget is not None and state.evaluation is None:
            raise CompileError("--accuracy-budget needs labelled data", hint="pass --eval-data DEV")
        method = self.config.calibration_method
        if method is not CalibrationMethod.MINMAX and not self._gptq_route(state):
            raise CompileError(  # it would be recorded in the recipe and not used
                f"--calibration-method {method.value}: OpenVINO quantizes {state.source.description} with NNCF, "
                "which sets its activation ranges itself",
                hint="drop --calibration-method, or use --backend onnxruntime",
            )

    def input_key(self, state: BuildState) -> str:
        return sha256_json(
            {
                "ir": [sha256_file(path) for path in state.lowered],
                "calibration": state.calibration.sha256,
                "evaluation": state.evaluation and state.evaluation.fingerprint(),
                "onnx": self._gptq_route(state) and state.model_sha256(),
            }
        )

    def run(self, state: BuildState, out_dir: Path) -> dict[str, Any]:
        decline_unless_opted_in()  # lower_openvino may have come from the cache, in another process
        float_ir = state.lowered[0]
        staging = out_dir / "int8"
        staging.mkdir()
        evaluator = None if state.evaluation is None else make_evaluator(state, self.config.threads)
        float_score = evaluator.score(float_ir) if evaluator else None
        route = self._quantize_qdq if self._gptq_route(state) else self._quantize_nncf
        with nncf_quiet():
            int8 = route(state, out_dir, staging / IR_MODEL, evaluator, float_score)
        quantized, plain, method, drop = int8.model, int8.plain, int8.method, int8.drop
        feeds, bench = bench_point(state.source, self.config.bench_sequence, self.config.threads)
        float_ms, int8_ms = latency_ms([float_ir, staging / IR_MODEL], feeds, self.config.threads)
        budget = self.config.accuracy_budget
        if not within(budget, drop):
            kept_note = f" with {len(int8.exclude)} layers in float" if int8.exclude else ""
            drops = [step["accuracy_drop"] for step in int8.steps or [] if step["accuracy_drop"] is not None]
            smallest = f" (the smallest drop of every attempt: {min(drops):.2f} points)" if len(drops) > 1 else ""
            raise BudgetError(
                f"the {CANDIDATE[method]} model loses {drop:.2f} points{kept_note}, over the budget of {budget}"
                + smallest,
                {
                    "attempts": [
                        {"mode": method, "accuracy_drop": drop, "latency_ms": int8_ms, "steps": int8.steps or []}
                    ]
                },
            )
        keep_float = int8_ms >= float_ms and self.config.mode is QuantMode.AUTO
        # the QDQ route's layers back in float are ONNX nodes; NNCF's, IR layers (as each one's rows name them)
        kept = list(int8.exclude) if int8.onnx else kept_float_layers(quantized, plain)
        attempt = {
            "mode": method,
            "accuracy_drop": drop,
            "latency_ms": int8_ms,
            "excluded_nodes": kept,
            "steps": int8.steps or [],
            "agreement": Evaluator.agreement(float_score, int8.score) if evaluator else None,
            **int8.refined,
        }
        report = QuantizationReport(
            backend="openvino",
            method=method,
            requested=self.config.mode.value,
            budget_points=budget,
            metric=evaluator.metric if evaluator else None,
            float_metric=float_score.value if float_score else None,
            chosen="float" if keep_float else f"{method}-int8",
            accuracy_drop=0.0 if keep_float else drop,
            speedup=1.0 if keep_float else round(float_ms / int8_ms, 3),
            float_ms=float_ms,
            int8_ms=int8_ms,
            int8_slower_than_float=int8_ms >= float_ms,
            excluded_nodes=() if keep_float else kept,
            bench=bench,
            attempts=(attempt,),
        )
        if not keep_float:  # what was kept, against float: per layer, and at the outputs
            report = self._with_layers(report, state, float_ir, staging / IR_MODEL, int8)
        if int8.onnx:
            int8.onnx.unlink()
        for name in self.lowers_to:
            shutil.copyfile((float_ir.parent if keep_float else staging) / name, out_dir / name)
        shutil.rmtree(staging)
        return report.model_dump(mode="json")

    def _with_layers(self, report, state: BuildState, float_ir: Path, int8_ir: Path, int8: Int8):
        """The report with its per-layer table and the int8 model's fidelity against float. The QDQ route's
        rows are those of its QDQ graph (run by ONNX Runtime, as the onnxruntime backend reports them: the
        layers it returned to float are ONNX nodes); NNCF's are read from the IR."""
        import openvino as ov

        if int8.onnx:
            nodes = quantizable_nodes(state.model_path, QuantizeConfig(mode=QuantMode.DYNAMIC).op_types)
            rows = [
                {**row, "kept_float": row["node"] in int8.exclude}
                for row in layer_report(state.model_path, int8.onnx, nodes, state.calibration, ())
            ]
        else:
            rows = openvino_layer_report(
                ov.Core().read_model(str(float_ir)),
                int8.model,
                state.calibration.feeds,
                plain_int8_model=int8.plain,
                threads=self.config.threads,
            )
        fidelity = int8_fidelity(state, _ir_runner(float_ir), _ir_runner(int8_ir), CANDIDATE[report.method])
        return report.model_copy(update={"layers": tuple(LayerRow(**row) for row in rows), "fidelity": fidelity})

    def _gptq_route(self, state: BuildState) -> bool:
        """A CNN whose weights are inline (GPTQ rewrites the graph as one file)."""
        return (
            self.config.weight_rounding
            and not data_files(state.model_path)
            and static_op_types(state.model_path, ()) == CNN_OP_TYPES
        )

    def _quantize_qdq(self, state: BuildState, out_dir: Path, ir_path: Path, evaluator, float_score) -> Int8:
        """The int8 IR from ONNX Runtime's QDQ graph with GPTQ codes, scored at `ir_path` (where the chosen
        attempt is left); over the budget, its least accurate layers back in float (fallback.py)."""
        import openvino as ov

        nodes = quantizable_nodes(state.model_path, QuantizeConfig(mode=QuantMode.DYNAMIC).op_types)

        def build(exclude: tuple[str, ...]) -> Int8:
            onnx_path = out_dir / f"qdq-{len(exclude)}.onnx"
            qdq = qdq_int8_ir(state.model_path, state.calibration, self._qdq_config(exclude), onnx_path)
            bound_ranges(ov, qdq.model, state.source.shape_plan)  # the float IR's declared input ranges
            ov.save_model(qdq.model, str(ir_path), compress_to_fp16=False)
            score = evaluator.score(ir_path) if evaluator else None
            drop = points_lost(float_score, score)
            refined = {"weight_rounding": qdq.weight_rounding, "bias_correction": qdq.bias_correction}
            return Int8(qdq.model, None, "onnxruntime-qdq", exclude, drop, score, refined, onnx_path)

        chosen, steps = within_budget(
            build,
            lambda attempt: ranked_layers(state, attempt.onnx, nodes),
            lambda attempt: within(self.config.accuracy_budget, attempt.drop),
            lambda old: old.onnx.unlink(),
        )
        chosen.steps = steps
        return chosen

    def _qdq_config(self, exclude: tuple[str, ...]) -> QuantizeConfig:
        return QuantizeConfig(
            mode=QuantMode.STATIC,
            op_types=CNN_OP_TYPES,
            activation_type=self.config.activation_type,
            weight_type=IntType.INT8,
            reduce_range=not self.config.full_range_weights,
            calibration_method=self.config.calibration_method,
            exclude=exclude,
        )

    def _quantize_nncf(self, state: BuildState, out_dir: Path, ir_path: Path, evaluator, float_score) -> Int8:
        """NNCF's int8 IR, saved and scored at `ir_path`."""
        import openvino as ov

        quantized, plain = self._quantize(ov.Core().read_model(str(state.lowered[0])), state, evaluator)
        ov.save_model(quantized, str(ir_path), compress_to_fp16=False)
        score = evaluator.score(ir_path) if evaluator else None
        return Int8(quantized, plain, "nncf", drop=points_lost(float_score, score), score=score)

    def _quantize(self, model, state: BuildState, evaluator: Evaluator | None):
        """The int8 model and NNCF's plain quantize of the same model (the same model without accuracy
        control): layers the plain one quantizes and the int8 model does not were returned to float."""
        decline_unless_opted_in()
        try:
            import nncf
        except ImportError:
            raise CompileError(
                "int8 for the OpenVINO backend needs NNCF", hint="pip install 'edgekiln[openvino]'"
            ) from None
        calibration = nncf.Dataset(list(state.calibration.feeds))
        # NNCF's transformer scheme leaves eltwise ops in float: on a CNN (EfficientNet-Lite0) 1.1x instead of 1.3-2.2x
        transformer = state.source.task is not Task.RAW and not is_convolutional_ir(model)
        model_type = nncf.ModelType.TRANSFORMER if transformer else None
        options = dict(model_type=model_type, subset_size=len(state.calibration.feeds))  # batches, not rows
        # EfficientNet-Lite0 (546 real images, top-1 agreement with fp32): 83.9 % with NNCF's defaults; 88.5 %
        # with the stem's weights at the full 8-bit range (NNCF halves the first layer's against pre-VNNI
        # x86's saturation); 92.7 % with its full bias correction as well; the same speed
        cnn = not transformer and is_convolutional_ir(model)
        options["fast_bias_correction"] = not cnn
        full_range = cnn and self.config.full_range_weights
        if evaluator is None or self.config.accuracy_budget is None:
            quantized = nncf.quantize(model, calibration, advanced_parameters=_advanced(full_range), **options)
            return quantized, quantized
        plain = nncf.quantize(model.clone(), calibration, advanced_parameters=_advanced(full_range), **options)

        def validate(compiled, _items) -> tuple[float, None]:
            request = compiled.create_infer_request()
            output = compiled.outputs[0]
            score = evaluator.score_runner(
                "candidate",
                lambda feeds: np.array(
                    request.infer(feeds, share_inputs=False, share_outputs=False)[output], copy=True
                ),
            )
            return score.value, None

        return nncf.quantize_with_accuracy_control(
            model,
            calibration,
            nncf.Dataset([0]),
            validate,
            max_drop=self.config.accuracy_budget / 100,
            drop_type=nncf.DropType.ABSOLUTE,
            advanced_quantization_parameters=_advanced(full_range, smooth_quant=False),
            **options,
        ), plain


def _advanced(full_range_weights: bool, smooth_quant: bool = True):
    """NNCF's advanced parameters. `smooth_quant=False`: NNCF 3.4's accuracy control returns a layer's weights
    to float but leaves SmoothQuant's scaling on its input, so each layer it reverts makes the drop worse:
    under a budget, quantize without SmoothQuant. `full_range_weights`: no overflow fix (7-bit weights)."""
    from nncf.quantization.advanced_parameters import (
        AdvancedQuantizationParameters,
        AdvancedSmoothQuantParameters,
        OverflowFix,
    )

    options: dict[str, Any] = {} if smooth_quant else {"smooth_quant_alphas": AdvancedSmoothQuantParameters(matmul=-1)}
    if full_range_weights:
        options["overflow_fix"] = OverflowFix.DISABLE
    return AdvancedQuantizationParameters(**options)


def make_quantizer(context) -> QuantizeOpenVino:
    """The OpenVINO int8 pass for `context` (planning.BuildContext)."""
    recipe = context.recipe.quantize
    types = types_for_profile(context.profile)
    return QuantizeOpenVino(
        QuantizeOpenVinoConfig(
            mode=recipe.mode,
            accuracy_budget=recipe.accuracy_budget,
            # no 7-bit weights where ONNX Runtime's quantizer needs no reduce_range either (VNNI, AMX, ARM)
            full_range_weights=not types["reduce_range"],
            activation_type=types["activation_type"],
            calibration_method=recipe.calibration_method,
            **bench_settings(context.profile),
        )
    )


def _ir_runner(path: Path):
    compiled = compile_ir(path, threads=1, cache_dir=None)
    return lambda feeds: list(compiled(feeds).values())


@contextlib.contextmanager
def nncf_quiet():
    """NNCF's progress bars go to stderr (compile's stdout holds its results) and its INFO lines are
    dropped (edgekiln reports what it chose)."""
    import logging

    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        logger.setLevel(level)
