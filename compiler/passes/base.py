"""The pass contract: a typed config, a precondition check, and a run that writes into a folder.

A pass reads the current `BuildState` and writes its outputs into the folder it is given:
`model.onnx` when it changes the model (with its weights in `model.onnx.data` beside it when they
are stored externally: the folder is self-contained), and a JSON-serialisable report it returns.
Because a pass sees nothing else, the pipeline can cache its folder under a hash of (pass, version, config, input).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from ..errors import CompileError
from ..onnx_external import model_sha256
from ..sources import ModelSource

MODEL_FILE = "model.onnx"


class PassConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True)
class BuildState:
    source: ModelSource
    model_path: Path | None = None  # the current ONNX model; None before export
    reports: Mapping[str, dict] = field(default_factory=lambda: MappingProxyType({}))
    lowered: tuple[Path, ...] = ()  # backend files, when a lowering pass ran; the first is what the runtime opens
    calibration: Any = None  # quantization.calibration.CalibrationSet, when calibration data was given
    evaluation: Any = None  # data.Dataset with labels, when an accuracy budget was given

    def model_sha256(self) -> str:
        if self.model_path is None:
            raise CompileError("internal: no ONNX model yet; a pass that needs one ran before the export pass")
        return model_sha256(self.model_path)  # with its external-data files, if any


class Pass(ABC):
    name: ClassVar[str]
    version: ClassVar[int] = 1  # bump when the output for the same input and config changes
    Config: ClassVar[type[PassConfig]]
    changes_model: ClassVar[bool]
    lowers_to: ClassVar[tuple[str, ...]] = ()  # files a lowering pass writes for its backend (the model first)

    def __init__(self, config: PassConfig | None = None) -> None:
        config = config if config is not None else self.Config()
        if not isinstance(config, self.Config):
            raise CompileError(f"pass {self.name} takes a {self.Config.__name__}, found {type(config).__name__}")
        self.config = config

    def check_preconditions(self, state: BuildState) -> None:
        """Raise CompileError when `state` is not something this pass can work on."""
        if state.model_path is None:
            raise CompileError(f"pass {self.name} needs an ONNX model; run an export pass first")

    def input_key(self, state: BuildState) -> str:
        """Hash of everything this pass reads from `state` (the cache key builds on it)."""
        return state.model_sha256()

    @abstractmethod
    def run(self, state: BuildState, out_dir: Path) -> dict[str, Any]:
        """Do the work; write `out_dir / MODEL_FILE` if `changes_model`; return the report."""
