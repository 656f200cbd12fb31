"""Compiler task registry: one module per task, each defining `SPEC` (a CompilerTaskSpec)."""

from __future__ import annotations

from importlib import import_module

from edgekiln.runtime.manifest import Task

from .base import CompilerTaskSpec

_MODULES = {
    Task.TEXT_CLASSIFICATION: "text_classification",
    Task.TOKEN_CLASSIFICATION: "token_classification",
    Task.SENTENCE_EMBEDDING: "sentence_embedding",
    Task.IMAGE_CLASSIFICATION: "image_classification",
    Task.RAW: "raw",
}


def compiler_task(task: Task | str) -> CompilerTaskSpec:
    """The spec of `task` (a Task, a DataTask or its name)."""
    return import_module(f"{__name__}.{_MODULES[Task(getattr(task, 'value', task))]}").SPEC


def all_tasks() -> list[CompilerTaskSpec]:
    return [compiler_task(task) for task in _MODULES]


def auto_model_class(task: Task | str):
    import transformers

    spec = compiler_task(task)
    if spec.auto_class is None:
        raise ValueError(f"internal: task {spec.task.value} loads no Hugging Face head")
    return getattr(transformers, spec.auto_class)


__all__ = ["CompilerTaskSpec", "all_tasks", "auto_model_class", "compiler_task"]
