"""Text classification: a sequence-classification head, scored by accuracy."""

from edgekiln.runtime.manifest import Task

from .base import CompilerTaskSpec

SPEC = CompilerTaskSpec(
    Task.TEXT_CLASSIFICATION,
    head_suffix="ForSequenceClassification",
    auto_class="AutoModelForSequenceClassification",
    peft_task_type="SEQ_CLS",
    metric="accuracy",
)
