"""Sentence embedding: the bare encoder (`*Model`) with pooling; no labels to score."""

from edgekiln.runtime.manifest import Task

from .base import CompilerTaskSpec

SPEC = CompilerTaskSpec(Task.SENTENCE_EMBEDDING, head_suffix="Model", auto_class="AutoModel")
