"""`evaluate(target, dataset)`: the same metrics for a checkpoint and for a compiled artifact."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..data import DataError, Dataset, DataTask
from ..errors import CompileError
from ..sources.base import is_timm, is_timm_folder
from .images import evaluate_images, without
from .metrics import agreement, classification_metrics, entity_metrics
from .predict import label_mapping, lacking_tags, predict_dataset
from .predictors import Predictor, open_predictor


def evaluate_predictor(
    predictor: Predictor, dataset: Dataset, *, batch_size: int = 32, skip_bad_images: bool = False
) -> tuple[dict, list]:
    """Metrics of `predictor` on `dataset`, and its predictions (in the dataset's label names)."""
    if dataset.task is DataTask.IMAGE_CLASSIFICATION:
        if predictor.task.value != dataset.task.value:
            raise DataError(f"{dataset.source} is image data but {predictor.name} does {predictor.task.value}")
        metrics, predictions = evaluate_images(predictor, dataset, batch_size=batch_size, skip_bad=skip_bad_images)
        return {"target": predictor.name, "data": dataset.source, "task": dataset.task.value, **metrics}, predictions
    if predictor.task.value == DataTask.IMAGE_CLASSIFICATION.value:
        raise DataError(
            f"{dataset.source} is {dataset.task.value} data but {predictor.name} does image-classification",
            hint="give image data: a folder of class sub-folders, or a CSV/TSV with path and label columns",
        )
    if skip_bad_images:
        raise DataError(f"--skip-bad-images is for image data; {dataset.source} is {dataset.task.value} data")
    mapping = label_mapping(dataset, predictor)
    back = {model: data for data, model in mapping.items()}
    unseen: list[int] = []
    raw = predict_dataset(predictor, dataset, batch_size=batch_size, unseen=unseen)
    if dataset.task is DataTask.TEXT_CLASSIFICATION:
        predictions = [back.get(label, label) for label in raw]
        metrics = classification_metrics([e.label for e in dataset.examples], predictions, dataset.labels)
    else:
        predictions = [[back.get(tag, tag) for tag in tags] for tags in raw]
        metrics = entity_metrics([e.tags for e in dataset.examples], predictions)
        metrics["words_past_max_length"] = sum(unseen)  # scored as O: the model never saw them
        lacking = lacking_tags(dataset, predictor.labels)
        if lacking:
            metrics["tags_the_model_lacks"] = lacking  # their entities count as missed
    return {"target": predictor.name, "data": dataset.source, "task": dataset.task.value, **metrics}, predictions


def evaluate(
    target: str | Path,
    dataset: Dataset,
    *,
    against: str | Path | None = None,
    batch_size: int = 32,
    weights: str | Path | None = None,
    labels: tuple[str, ...] | None = None,
    skip_bad_images: bool = False,
) -> dict:
    """Evaluate `target` (artifact, checkpoint, or timm:NAME with its `weights` file and optional class
    `labels`); with `against`, evaluate both on the same data and report the differences and how often
    their predictions agree. With `skip_bad_images`, images that cannot be decoded are left out of both
    and listed in the report."""
    for_target, for_against = timm_options(target, against, weights, labels)
    first = open_predictor(target, **for_target)
    report, predictions = evaluate_predictor(first, dataset, batch_size=batch_size, skip_bad_images=skip_bad_images)
    if against is None:
        return report
    if report.get("skipped_images"):  # the same images for both
        dataset = without(dataset, report["skipped_images"])
    second = open_predictor(against, **for_against)
    if first.one_at_a_time and not second.one_at_a_time:  # a padding-sensitive model: both run texts alone,
        second = replace(second, one_at_a_time=True)  # so that agreement measures the compile, not padding
    other, other_predictions = evaluate_predictor(
        second, dataset, batch_size=batch_size, skip_bad_images=skip_bad_images
    )
    if report.get("skipped_images"):
        other["skipped_images"] = report["skipped_images"]  # left out of both
    if second.one_at_a_time and not first.one_at_a_time:
        report, predictions = evaluate_predictor(
            replace(first, one_at_a_time=True), dataset, batch_size=batch_size, skip_bad_images=skip_bad_images
        )
    report["against"] = other
    report["agreement"] = agreement(predictions, other_predictions)
    keys = ("accuracy", "top5_accuracy", "macro_f1", "entity_f1")
    report["difference"] = {key: report[key] - other[key] for key in keys if key in report and key in other}
    return report


def timm_options(target, against, weights, labels) -> tuple[dict, dict]:
    """A weights file and class labels go to whichever of `target` and `against` is a timm:NAME model
    (labels alone also to a timm folder): open_predictor's keywords for each."""
    given = {key: value for key, value in (("weights", weights), ("labels", labels)) if value is not None}
    if not given:
        return {}, {}
    flags = " and ".join(f"--{key}" for key in given)
    belong = "belong" if len(given) == 2 else "belongs"  # noqa: PLR2004

    def takes(model) -> bool:
        return model is not None and (is_timm(str(model)) or ("weights" not in given and is_timm_folder(model)))

    named = [str(model) for model in (target, against) if takes(model)]
    kind = "timm:NAME model" if "weights" in given else "timm model (timm:NAME, or a timm folder)"
    if len(named) == 2:
        raise CompileError(
            f"{flags} {belong} to one {kind}, and both {target} and {against} are",
            hint="evaluate the timm models one at a time",
        )
    if not named:
        which = f"{target} is not one" if against is None else f"neither {target} nor {against} is"
        raise CompileError(f"{flags} {belong} to a {kind}, and {which}", hint=f"drop {flags}")
    return (given, {}) if takes(target) else ({}, given)


__all__ = ["evaluate", "evaluate_predictor", "open_predictor", "timm_options"]
