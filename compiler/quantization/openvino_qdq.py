"""Static int8 of a CNN for OpenVINO through a QDQ graph: ONNX Runtime's quantizer on the verified ONNX
(the whole convolutional graph), the conv weights' codes chosen by GPTQ and the biases corrected
(weight_rounding.py, bias_correction.py), then converted to IR like the float model. NNCF has no
GPTQ for activation-quantized convolutions: on EfficientNet-Lite0 this route agrees with fp32 on
98.5 % of 600 ImageNet-subject images and 94.5 % of scikit-image's 546 (NNCF: 98.2 % and 91.6 %) at the
same speed (benchmarks/README.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bias_correction import correct_biases
from .calibration import CalibrationSet
from .config import QuantizeConfig, QuantMode
from .conv_ops import CNN_OP_TYPES
from .ort_quantize import quantize_model
from .weight_rounding import round_weights

QDQ_FILE = "qdq.onnx"


@dataclass(frozen=True)
class QdqInt8:
    model: Any  # openvino.Model
    weight_rounding: dict
    bias_correction: dict


def qdq_int8_ir(float_onnx: Path, calibration: CalibrationSet, types: dict, work_dir: Path, reshape) -> QdqInt8:
    """The int8 IR of `float_onnx` with `types` (activation_type, weight_type, reduce_range);
    `reshape(model)` gives it the float IR's input ranges."""
    import openvino as ov

    path = work_dir / QDQ_FILE
    config = QuantizeConfig(mode=QuantMode.STATIC, op_types=CNN_OP_TYPES, **types)
    quantize_model(float_onnx, path, config, calibration, work_dir)
    rounded = round_weights(float_onnx, path, calibration.feeds).row()
    corrected = correct_biases(float_onnx, path, calibration.feeds).row()
    model = ov.convert_model(str(path))
    reshape(model)
    path.unlink()
    return QdqInt8(model, rounded, corrected)
