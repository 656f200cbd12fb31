"""ONNX Runtime quantization: dynamic int8, or static int8 in QDQ format with calibration."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

from ..errors import CompileError
from ..onnx_external import data_files
from .calibration import CalibrationSet
from .config import CalibrationMethod, IntType, QuantizeConfig, QuantMode


def quantizable_nodes(model_path: Path, op_types: tuple[str, ...]) -> list[str]:
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [node.name for node in graph.node if node.op_type in op_types]


def quantize_model(
    float_path: Path, out_path: Path, config: QuantizeConfig, calibration: CalibrationSet | None, work_dir: Path
) -> None:
    from onnxruntime import quantization as q

    types = {IntType.INT8: q.QuantType.QInt8, IntType.UINT8: q.QuantType.QUInt8}
    common = dict(
        op_types_to_quantize=list(config.op_types),
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        weight_type=types[config.weight_type],
        nodes_to_exclude=list(config.exclude),
        use_external_data_format=bool(data_files(float_path)),
    )  # weights past 2 GB stay external
    with _quiet():
        if config.mode is QuantMode.DYNAMIC:
            q.quantize_dynamic(str(float_path), str(out_path), **common)
            return
        if calibration is None:
            raise CompileError("static quantization needs calibration data", hint="pass --calibration DATA")
        methods = {
            CalibrationMethod.MINMAX: q.CalibrationMethod.MinMax,
            CalibrationMethod.PERCENTILE: q.CalibrationMethod.Percentile,
            CalibrationMethod.ENTROPY: q.CalibrationMethod.Entropy,
        }
        # The calibrator writes an augmented model; keep it inside the build folder.
        with _in_directory(work_dir):
            q.quantize_static(
                str(float_path),
                str(out_path),
                _Reader(calibration),
                quant_format=q.QuantFormat.QDQ,
                activation_type=types[config.activation_type],
                calibrate_method=methods[config.calibration_method],
                extra_options={"ActivationSymmetric": config.activation_type is IntType.INT8},
                **common,
            )
    float_outputs(out_path)


# Producers ONNX Runtime runs as integer kernels with a float result (QGemm, MatMulIntegerToFloat), so
# dropping their output's QuantizeLinear/DequantizeLinear costs no speed.
_FLOAT_RESULT_OPS = ("Gemm", "MatMul")


def float_outputs(path: Path) -> int:
    """Rewrite the QDQ model at `path` so that a graph output computed by a Gemm or MatMul leaves it in
    float instead of through a QuantizeLinear/DequantizeLinear pair. Rounding logits to 8 bits turns close
    scores into ties and flips top-1s (EfficientNet-Lite0: 13 of 546 images tied) for no gain in speed.
    Returns how many outputs it rewrote."""
    from collections import Counter

    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    producer = {name: node for node in graph.node for name in node.output}
    readers = Counter(name for node in graph.node for name in node.input)
    pairs = [(output.name, pair) for output in graph.output if (pair := _output_pair(output.name, producer, readers))]
    dropped = set()
    for name, (source, q, dq) in pairs:
        source.output[list(source.output).index(q.input[0])] = name
        for stale in [info for info in graph.value_info if info.name == q.input[0]]:
            graph.value_info.remove(stale)
        graph.node.remove(dq)
        graph.node.remove(q)
        dropped.update(list(q.input[1:]) + list(dq.input[1:]))
    if pairs:
        used = {name for node in graph.node for name in node.input}
        for unused in [t for t in graph.initializer if t.name in dropped - used]:
            graph.initializer.remove(unused)  # the removed pairs' scales and zero points
        onnx.save(model, str(path))
    return len(pairs)


def _output_pair(name: str, producer: dict, readers) -> tuple | None:
    """(its Gemm/MatMul, QuantizeLinear, DequantizeLinear) where the graph output `name` is a Gemm or
    MatMul result that goes only through one QuantizeLinear/DequantizeLinear pair; else None."""
    dq = producer.get(name)
    if dq is None or readers[name] or dq.op_type != "DequantizeLinear":
        return None
    q = producer.get(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear" or readers[q.output[0]] != 1:
        return None
    source = producer.get(q.input[0])
    if source is None or source.op_type not in _FLOAT_RESULT_OPS or readers[q.input[0]] != 1:
        return None
    return source, q, dq


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over pre-tokenised batches."""

    def __init__(self, calibration: CalibrationSet) -> None:
        self._batches = iter(calibration.feeds)

    def get_next(self):
        return next(self._batches, None)


@contextlib.contextmanager
def _in_directory(path: Path):
    import os
    import tempfile

    previous = os.getcwd()
    tempfile_dir = tempfile.tempdir
    os.chdir(path)
    tempfile.tempdir = str(path)
    try:
        yield
    finally:
        os.chdir(previous)
        tempfile.tempdir = tempfile_dir


@contextlib.contextmanager
def _quiet():
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)
