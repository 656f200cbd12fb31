"""Errors a user can act on. The CLI prints them as one line and exits with code 2.

Every error names the thing that is wrong and what to do about it; nothing below this layer
(onnxruntime, tokenizers, torch) is allowed to reach the user as a traceback.
"""

from __future__ import annotations


class EdgekilnError(Exception):
    """Base for every error caused by user input (a model, profile, artifact, dataset or flag)."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


class ArtifactError(EdgekilnError):
    """An artifact folder is missing, corrupt, tampered with or of an unsupported schema."""


class InputError(EdgekilnError):
    """Input data passed to a session or a CLI flag is not what was expected."""


class BackendUnavailableError(EdgekilnError):
    """A backend (or a device such as a GPU) the artifact needs is not available here."""
