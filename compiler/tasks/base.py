"""What a task is to the compiler: which model head it loads, how its data is labelled, how it is
scored. One module per task defines `SPEC`; the runtime's side of a task is `edgekiln.runtime.tasks`."""

from __future__ import annotations

from dataclasses import dataclass

from edgekiln.runtime.manifest import Task


@dataclass(frozen=True)
class CompilerTaskSpec:
    task: Task
    head_suffix: str | None  # Hugging Face architecture suffix that means this task ("ForTokenClassification")
    auto_class: str | None  # the transformers Auto class that loads it ("AutoModelForTokenClassification")
    peft_task_type: str | None = None  # peft's TaskType name for LoRA fine-tuning
    metric: str | None = None  # the headline metric on labelled data; None: not a labelled task
    text_input: bool = True  # calibration and eval data are text

    @property
    def labelled(self) -> bool:
        return self.metric is not None
