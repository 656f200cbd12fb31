"""Raw tensors: named arrays in, named arrays out; nothing to preprocess or decode."""

from __future__ import annotations

from ..errors import InputError
from ..manifest import Task
from .base import TaskSpec


class Raw(TaskSpec):
    task = Task.RAW
    description = "tensors in, tensors out (any model)"

    def predict(self, session, items):
        raise InputError(
            "this artifact's task is raw: it has no tokenizer or other preprocessing",
            hint=f"call run(feeds) with arrays for its inputs {[spec.name for spec in session.manifest.inputs]}",
        )


SPEC = Raw()
