"""Take a user's ONNX file into the build: validate it, carry old graphs forward (initializers
listed as inputs become constants, old opsets are upgraded; see `onnx_upgrade`), infer shapes,
and store it as `model.onnx` with its weights in one `model.onnx.data` beside it when they are
stored outside the protobuf."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import CompileError
from ..graph_io import load_onnx
from ..input_shapes import Dim
from ..onnx_external import PROTOBUF_LIMIT, external_bytes, external_tensors, save_model, save_streaming
from ..onnx_shapes import declare_inputs, outputs_from_runs, recompute_outputs, write_output_shapes
from ..onnx_upgrade import apply, plan
from .base import MODEL_FILE, BuildState, Pass, PassConfig
from .registry import register_pass


class CheckOnnxConfig(PassConfig):
    input_shapes: dict[str, tuple[Dim, ...]] | None = None  # the recipe's source.input_shapes


@register_pass
class CheckOnnx(Pass):
    name = "check_onnx"
    version = 3  # 2: IR-3 inputs stripped, old opsets upgraded, external data kept in one file; 3: declared
    # input shapes written in, output shapes recomputed
    Config = CheckOnnxConfig
    changes_model = True

    def check_preconditions(self, state: BuildState) -> None:
        if state.source.onnx_path is None:
            raise CompileError(f"{state.source.description} is not an ONNX file")

    def input_key(self, state: BuildState) -> str:
        return state.source.content_hash

    def run(self, state: BuildState, out_dir: Path) -> dict[str, Any]:
        path = state.source.onnx_path
        model = load_onnx(path, load_external_data=False)
        conversion = plan(model)
        external = bool(external_tensors(model))
        if conversion.to_opset is not None and external:
            model = _with_weights(model, path)
            external = False
        model = apply(model, conversion, path.name)
        declare_inputs(model, self.config.input_shapes)
        model, unknown = recompute_outputs(model)
        model = _infer_shapes(model)
        if external:  # the weights stay on disk: streamed into model.onnx.data
            save_streaming(model, path.parent, out_dir / MODEL_FILE)
        else:
            save_model(model, out_dir / MODEL_FILE)
        measured = outputs_from_runs(out_dir / MODEL_FILE, state.source.shape_plan, unknown) if unknown else {}
        if measured:
            write_output_shapes(out_dir / MODEL_FILE, measured)
        opsets = {entry.domain or "ai.onnx": entry.version for entry in model.opset_import}
        return {
            "opsets": opsets,
            "nodes": len(model.graph.node),
            "external_data": external_tensors(model) != [],
            "conversion": conversion.report(),
            "output_shapes_measured": measured,
            "op_types": dict(Counter(node.op_type for node in model.graph.node).most_common(10)),
        }


def _with_weights(model, path: Path):
    """Upgrading an opset reads the weights; the converter takes one protobuf, under 2 GB."""
    import onnx

    size = external_bytes(model)
    if size + model.ByteSize() >= PROTOBUF_LIMIT:
        raise CompileError(
            f"{path.name} needs an opset upgrade (opset below 10), and its {size / 1e9:.1f} GB of "
            "weights are too large for ONNX's version converter",
            hint="re-export the model at opset 10 or later",
        )
    onnx.load_external_data_for_model(model, str(path.parent))
    return model


def _infer_shapes(model):
    import onnx

    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # shape inference is best effort; the checker already passed
        return model
