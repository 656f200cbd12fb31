"""Loading the data quantization needs: calibration batches and labelled eval data."""

from __future__ import annotations

import warnings

from ..data import DataError, Dataset, DataTask, load_dataset
from ..errors import CompileError
from ..evaluate.predictors import make_encoder
from ..passes.base import BuildState
from ..sources import ModelSource
from ..tasks import compiler_task
from .calibration import build_calibration, read_calibration_examples
from .tensors import TensorSet, is_tensor_data, read_tensors, tensor_calibration

FEW_EXAMPLES = 50  # under this, one example is more than 2 points


def quantization_inputs(
    source: ModelSource, calibration: str | Dataset | None, samples: int, eval_data: str | Dataset | None
) -> BuildState:
    spec = compiler_task(source.task)
    text_task = spec.text_input
    if source.image is not None:
        return _image_inputs(source, calibration, samples, eval_data)
    if not text_task and source.shape_plan is not None:
        return tensor_inputs(source, calibration, samples, eval_data)
    if (calibration is not None or eval_data is not None) and (not text_task or source.tokenizer is None):
        raise CompileError(
            f"{source.description} takes raw tensors; calibration and eval data are text",
            hint="use --quantize dynamic, or compile it from an .onnx file with .npz tensors",
        )
    calibration_set = None
    if calibration is not None:
        examples = calibration if isinstance(calibration, Dataset) else read_calibration_examples(str(calibration))
        encoder = make_encoder(source.tokenizer_file, source.tokenizer)
        calibration_set = build_calibration(examples, encoder, samples)
    evaluation = None
    if eval_data is not None:
        if not spec.labelled:
            raise CompileError(f"an accuracy budget needs a classifier; {source.description} is {source.task.value}")
        evaluation = (
            eval_data
            if isinstance(eval_data, Dataset)
            else load_dataset(str(eval_data), task=DataTask(source.task.value))
        )
        _check_labels(source, evaluation)
    return BuildState(source=source, calibration=calibration_set, evaluation=evaluation)


def _image_inputs(
    source: ModelSource, calibration: str | Dataset | None, samples: int, eval_data: str | Dataset | None
) -> BuildState:
    from .image_calibration import build_image_calibration, read_image_calibration

    calibration_set = None
    if calibration is not None:
        calibration_set = build_image_calibration(read_image_calibration(calibration), source.image, samples)
    evaluation = None
    if eval_data is not None:
        evaluation = (
            eval_data
            if isinstance(eval_data, Dataset)
            else load_dataset(str(eval_data), task=DataTask.IMAGE_CLASSIFICATION)
        )
        _check_labels(source, evaluation)
    return BuildState(source=source, calibration=calibration_set, evaluation=evaluation)


def _check_labels(source: ModelSource, evaluation: Dataset) -> None:
    """The eval data's labels are the model's, before any calibration runs."""
    if not source.labels:
        raise DataError(f"{source.description} has no label names to compare {evaluation.source} with")
    from ..evaluate.predict import map_labels

    map_labels(evaluation, source.labels, source.description)  # a token task's tags too
    if 0 < len(evaluation) < FEW_EXAMPLES and evaluation.task is not DataTask.TOKEN_CLASSIFICATION:
        warnings.warn(
            f"eval data {evaluation.source} holds {len(evaluation)} examples: an accuracy drop is measured in "
            f"steps of {100 / len(evaluation):.3g} points (give a few hundred for a budget to mean much)",
            stacklevel=2,
        )


def tensor_inputs(source: ModelSource, calibration, samples: int, eval_data) -> BuildState:
    """Raw-tensor models: calibration and eval data are .npz files of named input arrays; eval data
    defaults to the calibration set (the budget is agreement with the float model, no labels)."""
    inputs = source.shape_plan.inputs
    for role, spec in (("calibration", calibration), ("eval", eval_data)):
        if spec is not None and (not isinstance(spec, str) or not is_tensor_data(spec)):
            raise CompileError(
                f"{source.description} takes raw tensors; its {role} data must be an .npz of named "
                f"input arrays (or a folder of them), not {spec}",
                hint=f"save them with numpy.savez(FILE, {inputs[0].name}=ARRAY, ...)",
            )
    calibration_data = read_tensors(calibration, inputs, "calibration") if calibration is not None else None
    evaluation: TensorSet | None = (
        read_tensors(eval_data, inputs, "eval") if eval_data is not None else calibration_data
    )
    calibration_set = tensor_calibration(calibration_data, inputs, samples) if calibration_data else None
    return BuildState(source=source, calibration=calibration_set, evaluation=evaluation)
