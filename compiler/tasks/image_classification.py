"""Image classification: an image-classification head, scored by accuracy (and top-5) on image data."""

from edgekiln.runtime.manifest import Task

from .base import CompilerTaskSpec

SPEC = CompilerTaskSpec(
    Task.IMAGE_CLASSIFICATION,
    head_suffix="ForImageClassification",
    auto_class="AutoModelForImageClassification",
    metric="accuracy",
    text_input=False,
)
