"""Raw tensors: any torch module or ONNX file; no head, no text data."""

from edgekiln.runtime.manifest import Task

from .base import CompilerTaskSpec

SPEC = CompilerTaskSpec(Task.RAW, head_suffix=None, auto_class=None, text_input=False)
