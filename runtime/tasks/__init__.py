"""Task registry: one module per task, each defining `SPEC` (a TaskSpec), found by the task's name."""

from __future__ import annotations

from importlib import import_module

from ..manifest import Task
from .base import TaskSpec

_MODULES = {
    Task.TEXT_CLASSIFICATION: "text_classification",
    Task.TOKEN_CLASSIFICATION: "token_classification",
    Task.SENTENCE_EMBEDDING: "sentence_embedding",
    Task.IMAGE_CLASSIFICATION: "image_classification",
    Task.RAW: "raw",
}


def task_spec(task: Task) -> TaskSpec:
    return import_module(f"{__name__}.{_MODULES[Task(task)]}").SPEC


__all__ = ["TaskSpec", "task_spec"]
