"""Lowering for ONNX Runtime: apply its hardware-independent graph optimisations ahead of time."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

from ..errors import CompileError
from ..onnx_external import DATA_SUFFIX, copy_model, data_files
from .base import MODEL_FILE, BuildState, Pass, PassConfig
from .registry import register_pass


class OrtLevel(str, Enum):
    # "basic" rewrites (constant folding, redundant-node removal) keep the graph portable to any
    # ONNX Runtime build; the extended, hardware-specific fusions run when the device loads it.
    NONE = "none"
    BASIC = "basic"


class OrtOptimizeConfig(PassConfig):
    level: OrtLevel = OrtLevel.BASIC


@register_pass
class OrtOptimize(Pass):
    name = "ort_optimize"
    Config = OrtOptimizeConfig
    changes_model = True

    def run(self, state: BuildState, out_dir: Path) -> dict[str, Any]:
        import onnxruntime as ort

        target = out_dir / MODEL_FILE
        before = _node_count(state.model_path)
        if self.config.level is OrtLevel.NONE:
            copy_model(state.model_path, target)
        else:
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
            options.optimized_model_filepath = str(target)
            options.log_severity_level = 3
            if data_files(state.model_path):  # large weights stay external, in one file beside the model
                options.add_session_config_entry(
                    "session.optimized_model_external_initializers_file_name", MODEL_FILE + DATA_SUFFIX
                )
                options.add_session_config_entry(
                    "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
                )
            try:
                ort.InferenceSession(str(state.model_path), options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime's own exception types
                first = str(exc).splitlines()[0].replace(str(state.model_path), state.source.description)
                raise CompileError(
                    f"onnxruntime {ort.__version__} cannot load {state.source.description}: {first}",
                    hint=_load_hint(state, first),
                ) from None
        return {"level": self.config.level.value, "nodes_before": before, "nodes_after": _node_count(target)}


_MISSING_KERNEL = ("NOT_IMPLEMENTED", "Could not find an implementation", "not a registered", "opset", "domain")


def _load_hint(state: BuildState, error: str) -> str:
    if not any(marker in error for marker in _MISSING_KERNEL):  # shapes, types, data: the graph disagrees
        return (
            "the graph disagrees with itself (shapes, types, or its weights' data files); re-export it, "
            "and check it with `python -m onnx.checker --full-check`"
        )
    if state.source.torch is None:  # a user's file: its opset is not ours to choose
        return (
            f"the file uses an operator or opset this onnxruntime lacks; `edgekiln inspect "
            f"{state.source.description}` lists its opsets; upgrade onnxruntime or re-export the model"
        )
    return "the graph uses an operator or opset this onnxruntime lacks; try another --opset"


def _node_count(path: Path) -> int:
    import onnx

    return len(onnx.load(str(path), load_external_data=False).graph.node)
