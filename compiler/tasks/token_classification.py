"""Token classification: a token-classification head, scored by entity-level F1 (seqeval)."""

from edgekiln.runtime.manifest import Task

from .base import CompilerTaskSpec

SPEC = CompilerTaskSpec(
    Task.TOKEN_CLASSIFICATION,
    head_suffix="ForTokenClassification",
    auto_class="AutoModelForTokenClassification",
    peft_task_type="TOKEN_CLS",
    metric="entity_f1",
)
