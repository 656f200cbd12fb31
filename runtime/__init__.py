"""edgekiln runtime: load a compiled artifact and run it with numpy, tokenizers and the backend's
own runtime only. Nothing here imports torch, transformers or `edgekiln.compiler`.
"""

from .errors import ArtifactError, BackendUnavailableError, EdgekilnError, InputError
from .manifest import SCHEMA_VERSION, Manifest, Precision, Task
from .session import Classification, Session, TokenTag, load

__all__ = [
    "ArtifactError",
    "BackendUnavailableError",
    "Classification",
    "EdgekilnError",
    "InputError",
    "Manifest",
    "Precision",
    "SCHEMA_VERSION",
    "Session",
    "Task",
    "TokenTag",
    "load",
]
