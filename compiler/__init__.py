"""edgekiln compiler: trace, verify and lower a model into an artifact for a target profile."""
from .api import CompileResult, compile
from .errors import CompileError, ExportError, FidelityError
from .passes.export_onnx import Exporter
from .passes.verify_fidelity import FidelityConfig
from .sources import Pooling

__all__ = ["CompileError", "CompileResult", "ExportError", "Exporter", "FidelityConfig", "FidelityError",
           "Pooling", "compile"]
