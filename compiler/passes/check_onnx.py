"""Take a user's ONNX file into the build: validate it, infer shapes, store it as one file."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import CompileError
from ..graph_io import load_onnx
from .base import MODEL_FILE, BuildState, Pass, PassConfig
from .registry import register_pass

_TWO_GB = 2_000_000_000


class CheckOnnxConfig(PassConfig):
    pass


@register_pass
class CheckOnnx(Pass):
    name = "check_onnx"
    Config = CheckOnnxConfig
    changes_model = True

    def check_preconditions(self, state: BuildState) -> None:
        if state.source.onnx_path is None:
            raise CompileError(f"{state.source.description} is not an ONNX file")

    def input_key(self, state: BuildState) -> str:
        return state.source.content_hash

    def run(self, state: BuildState, out_dir: Path) -> dict[str, Any]:
        import onnx

        model = load_onnx(state.source.onnx_path)
        try:
            model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
        except Exception:  # shape inference is best effort; the checker already passed
            pass
        external = model.ByteSize() > _TWO_GB
        onnx.save(model, str(out_dir / MODEL_FILE), save_as_external_data=external,
                  location=MODEL_FILE + ".data" if external else None)
        opsets = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
        return {"opsets": opsets, "nodes": len(model.graph.node),
                "op_types": dict(Counter(node.op_type for node in model.graph.node).most_common(10))}
