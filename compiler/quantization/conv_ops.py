"""Which operators static int8 quantizes in a convolutional network.

Quantizing only the convolutions leaves every activation, residual Add and pooling in float, so each
Conv is wrapped in its own QuantizeLinear/DequantizeLinear pair at run time: on EfficientNet-Lite0
ONNX Runtime kept 34 Quantize and 34 Dequantize nodes (28 % of the time) and ran 1.6x the float
speed. Quantizing the activations, Adds and pools as well leaves one integer graph from input to
logits (QLinearConv, QLinearAdd, QLinearGlobalAveragePool; 1.8-2.0x). Transformers keep the matrix
products only: LayerNorm, Softmax and GELU lose too much in int8.
"""

from __future__ import annotations

from pathlib import Path

CONV_OPS = ("Conv", "ConvTranspose")
MATMUL_OPS = ("MatMul", "Gemm")
# Operators ONNX Runtime's QDQ quantizer can keep integer between two convolutions.
CNN_OP_TYPES = (
    CONV_OPS
    + MATMUL_OPS
    + (
        "Add",
        "Mul",
        "Relu",
        "Clip",
        "LeakyRelu",
        "Sigmoid",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "Concat",
        "Pad",
        "Resize",
        "Reshape",
        "Flatten",
        "Squeeze",
        "Unsqueeze",
        "Transpose",
        "Split",
    )
)


def is_convolutional(op_types: list[str]) -> bool:
    """A graph with at least as many convolutions as matrix products (a ViT has one Conv, many MatMuls)."""
    convs = sum(op in CONV_OPS for op in op_types)
    return convs > 0 and convs >= sum(op in MATMUL_OPS for op in op_types)


def static_op_types(model_path: Path, default: tuple[str, ...]) -> tuple[str, ...]:
    """The operator types static int8 quantizes in this model: the CNN set for a convolutional graph."""
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return CNN_OP_TYPES if is_convolutional([node.op_type for node in graph.node]) else default


OPENVINO_CONV_OPS = {
    "Convolution": "Conv",
    "GroupConvolution": "Conv",
    "ConvolutionBackpropData": "Conv",
    "MatMul": "MatMul",
}


def is_convolutional_ir(model) -> bool:
    """The same rule on an OpenVINO model (openvino.Model)."""
    return is_convolutional([OPENVINO_CONV_OPS.get(op.get_type_name(), "") for op in model.get_ops()])
