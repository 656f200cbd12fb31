"""Lowering to OpenVINO: convert the verified ONNX to IR (model.xml + model.bin) and check that
OpenVINO's outputs match ONNX Runtime's on the fidelity shapes."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from edgekiln.runtime.backends.openvino import compile_ir

from ..errors import CompileError, FidelityError
from .base import BuildState, Pass
from .registry import register_pass
from .verify_fidelity import FidelityConfig, compare_outputs, ort_runner

IR_MODEL, IR_WEIGHTS = "model.xml", "model.bin"
OV_PRECISION = {"fp32": "f32", "bf16": "bf16"}


class LowerOpenVinoConfig(FidelityConfig):
    """The ONNX check's shapes and thresholds, and OpenVINO's inference precision (bf16 rounds every
    matrix product's inputs to 8 mantissa bits, so it is checked by cosine, not absolute difference)."""

    precision: str = "fp32"


BF16_CHECK = {"max_abs_diff": 1.0, "min_cosine": 0.99}


@register_pass
class LowerOpenVino(Pass):
    name = "lower_openvino"
    Config = LowerOpenVinoConfig
    changes_model = False
    lowers_to = (IR_MODEL, IR_WEIGHTS)

    def run(self, state: BuildState, out_dir: Path) -> dict[str, Any]:
        ov = _openvino()
        try:
            model = ov.convert_model(str(state.model_path))
        except Exception as exc:  # OpenVINO's conversion errors name the unsupported operator
            raise CompileError(f"OpenVINO cannot convert the model: {str(exc).splitlines()[0]}",
                               hint="use --backend onnxruntime") from None
        ov.save_model(model, str(out_dir / IR_MODEL), compress_to_fp16=False)
        precision = OV_PRECISION[self.config.precision]
        compiled = compile_ir(out_dir / IR_MODEL, threads=1, cache_dir=None, precision=precision)
        reference = ort_runner(state.model_path, optimize=True)
        rng = np.random.default_rng(self.config.seed)
        rows = []
        for batch, sequence in self.config.shapes:
            feeds = state.source.make_feeds(batch, sequence, rng)
            rows.append(compare_outputs(reference(feeds), list(compiled(feeds).values()), batch, sequence))
        limits = BF16_CHECK if precision == "bf16" else {"max_abs_diff": self.config.max_abs_diff,
                                                         "min_cosine": self.config.min_cosine}
        report = {"openvino": ov.get_version(), "inference_precision": precision,
                  "reference": "onnxruntime (same ONNX)", "shapes": rows,
                  "max_abs_diff": max(r["max_abs_diff"] for r in rows),
                  "min_cosine": min(r["min_cosine"] for r in rows), "thresholds": limits}
        report["passed"] = report["max_abs_diff"] <= limits["max_abs_diff"] and \
            report["min_cosine"] >= limits["min_cosine"]
        if not report["passed"]:
            raise FidelityError(f"OpenVINO's outputs differ from ONNX Runtime's: max abs diff "
                                f"{report['max_abs_diff']:.3g}, min cosine {report['min_cosine']:.6f}",
                                hint="use --backend onnxruntime and report the model")
        return report


def _openvino():
    try:
        import openvino
    except ImportError:
        raise CompileError("the openvino backend needs the openvino package",
                           hint="pip install 'edgekiln[openvino]'") from None
    return openvino
