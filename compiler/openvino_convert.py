"""ONNX -> OpenVINO model, for the lowering and the int8 QDQ route.

- A failed conversion becomes one line naming the operators OpenVINO could not convert and why.
  OpenVINO's own first line only points into its source ("Check 'false' failed at ...").
- An AveragePool whose one window covers its whole input is converted as the GlobalAveragePool it
  computes. Hugging Face's EfficientNet pools with a kernel of `hidden_dim` (1280) and ceil_mode over
  a 7×7 map; ONNX Runtime and TVM run that, but OpenVINO refuses a kernel larger than its input.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

from .errors import CompileError
from .quantization.qdq_graph import attribute


def convert_onnx(ov, path: Path, *, what: str = "the model", hint: str = "use --backend onnxruntime") -> Any:
    """`ov.convert_model` of the ONNX file `path` (an openvino.Model), or one CompileError line."""
    with tempfile.TemporaryDirectory(prefix="edgekiln-ov-") as scratch:
        try:
            source = _with_global_pools(path, Path(scratch)) or path
            return ov.convert_model(str(source))
        except Exception as exc:  # onnx's load/save and OpenVINO's conversion raise many types
            raise CompileError(f"OpenVINO cannot convert {what}: {conversion_failure(str(exc))}", hint=hint) from None


def conversion_failure(message: str) -> str:
    """The operators OpenVINO's report lists as failed, and the first one's reason; else its lines that
    are not locations in OpenVINO's source, joined ("Loading input model: Invalid usage of ... (w.bin)")."""
    lines = [line.strip() for line in message.splitlines()]
    failed = []
    if "Summary:" in lines:
        failed = [line[3:] for line in lines[lines.index("Summary:") + 1 :] if line.startswith("-- ")]
    if not failed:
        said = ": ".join(line for line in lines if line and not _is_location(line))
        return (said[:297] + "...") if len(said) > 300 else said or "unknown error"
    blocks = message.split("Summary:")[0].split("\n-- ")
    detail = [line.strip() for line in blocks[1].splitlines()[1:] if line.strip()] if len(blocks) > 1 else []
    reason = next((line for line in reversed(detail) if not _is_location(line)), "")
    return "; ".join(failed) + (f" ({reason})" if reason else "")


def _is_location(line: str) -> bool:
    """Lines that say where in OpenVINO the check failed, not what failed."""
    return (
        line.startswith(("Check '", "While validating", "[ONNX Frontend]", "FrontEnd API failed", "Model wasn't"))
        or " failed at src/" in line
    )


def _with_global_pools(path: Path, scratch: Path) -> Path | None:
    """A copy of `path` in `scratch` with whole-input AveragePools as GlobalAveragePool; None if it has none."""
    import onnx

    graph_only = onnx.load(str(path), load_external_data=False)
    if not any(node.op_type == "AveragePool" for node in graph_only.graph.node):
        return None
    try:
        dims = _static_dims(onnx.shape_inference.infer_shapes(graph_only).graph)
    except Exception:  # shapes unknown: leave the graph as exported
        return None
    positions = [
        i
        for i, node in enumerate(graph_only.graph.node)
        if node.op_type == "AveragePool"
        and node.domain in ("", "ai.onnx")
        and _covers_input(node, dims.get(node.input[0]))
    ]
    if not positions:
        return None
    model = onnx.load(str(path))
    for position in positions:
        node = model.graph.node[position]
        node.op_type = "GlobalAveragePool"
        del node.attribute[:]
    target = scratch / "model.onnx"
    external = any(init.data_location == onnx.TensorProto.EXTERNAL for init in graph_only.graph.initializer)
    onnx.save(model, str(target), save_as_external_data=external, location="model.onnx.data")
    return target


def _static_dims(graph) -> dict[str, list[int | None]]:
    values = [*graph.input, *graph.value_info, *graph.output]
    return {
        value.name: [dim.dim_value if dim.HasField("dim_value") else None for dim in value.type.tensor_type.shape.dim]
        for value in values
    }


def _covers_input(node, dims: list[int | None] | None) -> bool:
    """One window, no padding, over every spatial position: the input's mean per channel, as ONNX Runtime
    and PyTorch compute it (their divisor counts only the positions inside the input)."""
    if not dims or len(dims) < 3 or any(d is None for d in dims[2:]):
        return False
    kernel = list(attribute(node, "kernel_shape", []))
    spatial = dims[2:]
    strides = list(attribute(node, "strides", [1] * len(kernel)))
    if len(kernel) != len(spatial) or attribute(node, "auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID"):
        return False
    if any(attribute(node, "pads", [0])) or any(d != 1 for d in attribute(node, "dilations", [1])):
        return False
    ceil = bool(attribute(node, "ceil_mode", 0))
    return all(_one_window(size, k, s, ceil) for size, k, s in zip(spatial, kernel, strides, strict=True))


def _one_window(size: int, kernel: int, stride: int, ceil: bool) -> bool:
    if kernel < size:
        return False
    outputs = (math.ceil if ceil else math.floor)((size - kernel) / stride) + 1
    return outputs == 1
