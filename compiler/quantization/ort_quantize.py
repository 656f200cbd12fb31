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
