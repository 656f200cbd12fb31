"""Lowering to OpenVINO: convert the verified ONNX to IR (model.xml + model.bin) and check that
OpenVINO's outputs match ONNX Runtime's on the fidelity shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgekiln.runtime.backends.openvino import compile_ir

from ..errors import CompileError
from ..fidelity import FidelityConfig, check, fidelity_feeds, is_classifier, require
from ..input_shapes import DimRange, suggestion
from ..openvino_convert import convert_onnx
from ..vendor_telemetry import decline_unless_opted_in
from .base import BuildState, Pass
from .registry import register_pass
from .verify_fidelity import ort_runner

IR_MODEL, IR_WEIGHTS = "model.xml", "model.bin"
OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


class LowerOpenVinoConfig(FidelityConfig):
    """The ONNX check's shapes and thresholds, and OpenVINO's inference precision (bf16 rounds every
    matrix product's inputs to 8 mantissa bits, so it is checked with looser limits)."""

    precision: str = "fp32"


# bf16 keeps about 3 significant digits: dense outputs by direction, classifiers by agreement.
BF16_LIMITS = {"max_abs_diff": 1.0, "min_cosine": 0.99, "min_agreement": 0.95, "max_relative_error": 0.05}


@register_pass
class LowerOpenVino(Pass):
    name = "lower_openvino"
    Config = LowerOpenVinoConfig
    changes_model = False
    lowers_to = (IR_MODEL, IR_WEIGHTS)

    def run(self, state: BuildState, out_dir: Path) -> dict[str, Any]:
        ov = _openvino()
        model = convert_onnx(ov, state.model_path)
        bound_ranges(ov, model, state.source.shape_plan)
        ov.save_model(model, str(out_dir / IR_MODEL), compress_to_fp16=False)
        precision = OV_PRECISION[self.config.precision]
        compiled = compile_ir(out_dir / IR_MODEL, threads=1, cache_dir=None, precision=precision)
        limits = self.config.model_copy(update=BF16_LIMITS) if precision == "bf16" else self.config
        report = check(
            ort_runner(state.model_path, optimize=True),
            lambda feeds: list(compiled(feeds).values()),
            fidelity_feeds(state, self.config),
            limits,
            classifier=is_classifier(state),
            names=("onnxruntime (same ONNX)", f"OpenVINO {precision}"),
            details={"openvino": ov.get_version(), "inference_precision": precision},
            shape_hint=suggestion(state),
        )
        require(report, hint="use --backend onnxruntime and report the model")
        return report.model_dump(mode="json")


def bound_ranges(ov, model, plan) -> None:
    """Declared ranges become bounded dynamic dimensions (fixed sizes are already in the ONNX graph)."""
    if plan is None or not plan.has_ranges:
        return
    shapes = {}
    for name, dims in plan.dims.items():
        if any(isinstance(dim, DimRange) for dim in dims):
            shapes[name] = ov.PartialShape(
                [
                    ov.Dimension(d.smallest(), d.largest())
                    if isinstance(d, DimRange)
                    else ov.Dimension(d)
                    if isinstance(d, int)
                    else ov.Dimension()
                    for d in dims
                ]
            )
    try:
        model.reshape(shapes)
    except Exception as exc:  # OpenVINO's shape inference names the node that cannot take the bounds
        raise CompileError(
            f"OpenVINO cannot give the model the declared input ranges: {str(exc).splitlines()[0]}",
            hint="declare fixed sizes with --input-shape, or use --backend onnxruntime",
        ) from None


def _openvino():
    try:
        import openvino
    except ImportError:
        raise CompileError(
            "the openvino backend needs the openvino package", hint="pip install 'edgekiln[openvino]'"
        ) from None
    decline_unless_opted_in()
    return openvino


def make_lowering(context) -> LowerOpenVino:
    """The lower_openvino pass for `context` (planning.BuildContext): the recipe's fidelity and precision."""
    recipe = context.recipe
    return LowerOpenVino(LowerOpenVinoConfig(**recipe.fidelity.model_dump(), precision=recipe.precision.value))
