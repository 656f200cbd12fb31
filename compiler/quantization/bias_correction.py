"""Empirical bias correction for static int8 of convolutional graphs (Nagel et al. 2019, "Data-Free
Quantization Through Weight Equalization and Bias Correction", the empirical variant).

Rounding weights and clipping activations to int8 shifts the mean of each layer's output, and the
shifts add up through the network. For each quantized Conv/Gemm in graph order, the int8 model's
per-output-channel mean over calibration data is compared with the float model's and the difference
is folded into the layer's int32 bias, one layer at a time (a layer is measured after the layers
before it were corrected: correcting all at once over-corrects, since a layer's shift already holds
its inputs'). Only bias values change: the graph, its kernels and its speed stay the same.
EfficientNet-Lite0 (546 real images): top-1 agreement with fp32 81.5 % -> 94.0 % on ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .qdq_graph import first_rows, paired_nodes, probe_session

LAYER_OPS = ("Conv", "Gemm")
SAMPLES = 128  # calibration rows measured (at most): one pass of the int8 graph up to each corrected layer


@dataclass(frozen=True)
class BiasCorrection:
    layers: int  # layers whose bias was corrected
    max_shift: float  # the largest per-channel mean shift corrected (in the layer's output units)

    def row(self) -> dict:
        return {"layers": self.layers, "max_shift": round(self.max_shift, 6)}


def correct_biases(
    float_path: Path, int8_path: Path, feeds: Sequence[dict[str, np.ndarray]], samples: int = SAMPLES
) -> BiasCorrection:
    """Rewrite the QDQ model at `int8_path` with corrected int32 biases (its Conv/Gemm nodes keep the
    float model's node names, as onnxruntime's quantizer leaves them)."""
    import onnx

    feeds = first_rows(feeds, samples)
    float_model = onnx.load(str(float_path))
    int8_model = onnx.load(str(int8_path))
    layers = [
        (node, float_node.output[0], bias)
        for node, float_node in paired_nodes(float_model, int8_model, LAYER_OPS)
        if (bias := _int32_bias(int8_model, node))
    ]
    if not layers:
        return BiasCorrection(0, 0.0)
    targets = channel_means(float_model, [float_output for _, float_output, _ in layers], feeds)
    largest = 0.0
    for (node, _, (values, scale)), target in zip(layers, targets):
        # the int8 graph names a Conv's output after the Clip it absorbed: still the value before clipping
        (mean,) = channel_means(int8_model, [node.output[0]], feeds)
        shift = target - mean
        largest = max(largest, float(np.abs(shift).max()))
        bias = onnx.numpy_helper.to_array(values).astype(np.int64)
        step = onnx.numpy_helper.to_array(scale).astype(np.float64)
        corrected = np.clip(bias + np.round(shift / step), np.iinfo(np.int32).min, np.iinfo(np.int32).max)
        values.CopyFrom(onnx.numpy_helper.from_array(corrected.astype(np.int32), values.name))
    onnx.save(int8_model, str(int8_path))
    return BiasCorrection(len(layers), largest)


def channel_means(model, tensors: list[str], feeds: Sequence[dict[str, np.ndarray]]) -> list[np.ndarray]:
    """Mean of each named tensor over every axis but the channel axis (1), across all feeds."""
    session = probe_session(model, tensors)
    sums, rows = [0.0] * len(tensors), 0
    for feed in feeds:
        for index, value in enumerate(session.run(tensors, feed)):
            axes = (0,) + tuple(range(2, value.ndim))
            sums[index] = sums[index] + value.astype(np.float64).mean(axis=axes) * value.shape[0]
        rows += len(next(iter(feed.values())))
    return [total / rows for total in sums]


def _int32_bias(model, node):
    """The (int32 values, scale) initializers of a quantized node's bias, or None (no bias, or a float one)."""
    if len(node.input) < 3 or not node.input[2]:
        return None
    producer = next((n for n in model.graph.node if node.input[2] in n.output), None)
    if producer is None or producer.op_type != "DequantizeLinear":
        return None
    initializers = {init.name: init for init in model.graph.initializer}
    values, scale = initializers.get(producer.input[0]), initializers.get(producer.input[1])
    if values is None or scale is None or values.data_type != 6:  # onnx.TensorProto.INT32
        return None
    return values, scale
