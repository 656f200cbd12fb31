"""Static int8 of a CNN for OpenVINO through a QDQ graph: ONNX Runtime's quantizer on the verified ONNX
(the whole convolutional graph), the conv weights' codes chosen by GPTQ and the biases corrected
(weight_rounding.py, bias_correction.py), then converted to IR like the float model. NNCF has no
GPTQ for activation-quantized convolutions: on EfficientNet-Lite0 this route agrees with fp32 on
98.3 % of 600 held-out images of ImageNet-type subjects and 93.6 % of scikit-image's 546 (NNCF: 97.5 %
and 91.6 %) at the same speed (benchmarks/README.md)."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..openvino_convert import convert_onnx
from .bias_correction import correct_biases
from .calibration import CalibrationSet
from .config import QuantizeConfig
from .ort_quantize import quantize_model
from .weight_rounding import round_weights


@dataclass(frozen=True)
class QdqInt8:
    model: Any  # openvino.Model
    weight_rounding: dict
    bias_correction: dict


def qdq_int8_ir(float_onnx: Path, calibration: CalibrationSet, config: QuantizeConfig, onnx_path: Path) -> QdqInt8:
    """The int8 IR of `float_onnx` (weights inline: no external data) quantized as `config` says, with the
    ONNX graph's input shapes. The QDQ graph is left at `onnx_path` (for the per-layer ranking of a budget
    search), nothing else beside it."""
    import openvino as ov

    scratch = onnx_path.with_name(onnx_path.stem + "-scratch")
    scratch.mkdir()
    try:
        quantize_model(float_onnx, onnx_path, config, calibration, scratch)
        rounded = round_weights(float_onnx, onnx_path, calibration.feeds).row()
        corrected = correct_biases(float_onnx, onnx_path, calibration.feeds).row()
        model = convert_onnx(
            ov,
            onnx_path,
            what="the int8 (QDQ) graph",
            hint="use --backend onnxruntime, or compile without --quantize",
        )
    finally:
        shutil.rmtree(scratch)
    return QdqInt8(model, rounded, corrected)
