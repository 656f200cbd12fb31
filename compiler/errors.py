"""Compiler errors: user-actionable, printed as one line by the CLI (exit code 2)."""

from edgekiln.runtime.errors import EdgekilnError


class CompileError(EdgekilnError):
    """The model, a flag or the output folder is not usable; the message says what to change."""


class ExportError(CompileError):
    """Tracing the model to ONNX failed; the message names the module or operator."""


class FidelityError(CompileError):
    """The compiled model's outputs differ from the reference beyond the configured thresholds."""
