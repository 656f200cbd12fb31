"""Which backends can take an ONNX file, before any build: per backend, the model's operators it
supports and the ones it lacks.

- ONNX Runtime: the CPU kernels it registers for the operator at the model's opset, and a session
  created from the file (which also accepts operators ONNX defines as functions).
- OpenVINO: its ONNX frontend's partial conversion (an operator it has no translator for stays a
  `NotSupportedONNXNode` naming it), then the CPU plugin's `query_model` on the converted model.
- TVM: the Relax ONNX importer's converter map, and whether a converter has a version for the opset.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from .openvino_convert import conversion_failure

DEFAULT_DOMAIN = "ai.onnx"
_ORT_MISSING = re.compile(r"(?:Could not find an implementation for |:)(\w+)\(\d+\)(?: node| is not a registered)")


def preflight(path: Path, model) -> list[dict]:
    """One row per backend: {backend, available, supported, lacking, note}."""
    ops = Counter(_op(node) for node in all_nodes(model.graph))
    opset = next((entry.version for entry in model.opset_import if entry.domain in ("", DEFAULT_DOMAIN)), 1)
    producers = {name: _op(node) for node in all_nodes(model.graph) for name in (*node.output, node.name) if name}
    return [
        _row(name, check, path, ops, opset, producers)
        for name, check in (("onnxruntime", _onnxruntime), ("openvino", _openvino), ("tvm", _tvm))
    ]


def all_nodes(graph):
    """The graph's nodes and those of its subgraphs (If branches, Loop and Scan bodies)."""
    for node in graph.node:
        yield node
        for attribute in node.attribute:
            for sub in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                yield from all_nodes(sub)


def _op(node) -> str:
    domain = node.domain or DEFAULT_DOMAIN
    return node.op_type if domain == DEFAULT_DOMAIN else f"{domain}:{node.op_type}"


def _row(name: str, check, path: Path, ops: Counter, opset: int, producers: dict[str, str]) -> dict:
    try:
        lacking, note = check(path, ops, opset, producers)
    except ImportError:
        return {
            "backend": name,
            "available": False,
            "supported": [],
            "lacking": [],
            "note": f"not installed (pip install 'edgekiln[{name}]')",
        }
    lacking = sorted(set(lacking))
    return {
        "backend": name,
        "available": True,
        "supported": sorted(set(ops) - set(lacking)),
        "lacking": lacking,
        "note": note,
    }


def _onnxruntime(path: Path, ops: Counter, opset: int, producers: dict[str, str]) -> tuple[list[str], str]:
    import onnxruntime  # noqa: F401
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    kernels: dict[str, list[tuple[int, int]]] = {}
    for kernel in state.get_all_opkernel_def():
        if kernel.provider == "CPUExecutionProvider":
            op = kernel.op_name if kernel.domain in ("", DEFAULT_DOMAIN) else f"{kernel.domain}:{kernel.op_name}"
            kernels.setdefault(op, []).append(tuple(kernel.version_range))
    no_kernel = [
        op
        for op in ops
        if op != "Constant"  # folded at load, no kernel
        and not any(start <= opset for start, _ in kernels.get(op, []))
    ]
    from .ort_sessions import cpu_session

    try:
        cpu_session(path, optimize=False)
    except Exception as exc:  # onnxruntime names the first operator it cannot run
        found = _ORT_MISSING.findall(str(exc))
        return no_kernel + found, "session: " + " ".join(str(exc).split())[:160]
    return [], "a session opens" + (f" (ONNX functions expand {', '.join(sorted(no_kernel))})" if no_kernel else "")


def _openvino(path: Path, ops: Counter, opset: int, producers: dict[str, str]) -> tuple[list[str], str]:
    import openvino as ov

    frontend = ov.frontend.FrontEndManager().load_by_framework("onnx")
    try:
        converted = frontend.convert_partially(frontend.load(str(path)))
    except Exception as exc:  # noqa: BLE001 - it cannot read the file at all (truncated external data, ...)
        return ["(the whole file)"], "OpenVINO cannot read it: " + conversion_failure(str(exc))
    no_rule, failed = [], []
    for op in converted.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "NotSupportedONNXNode":  # a conversion rule that failed here; it names the ONNX operator
            attributes = op.get_attributes()
            domain = attributes.get("ONNX_META_domain") or DEFAULT_DOMAIN
            name = attributes.get("ONNX_META_type", "?")
            failed.append(name if domain == DEFAULT_DOMAIN else f"{domain}:{name}")
        elif kind == "ONNXFrameworkNode":  # no conversion rule: named after the ONNX node's output
            no_rule.append(producers.get(op.get_friendly_name(), op.get_friendly_name()))
    notes = []
    if no_rule:
        notes.append("no conversion rule for " + ", ".join(sorted(set(no_rule))))
    if failed:
        notes.append(
            "conversion failed for " + ", ".join(sorted(set(failed))) + " at the file's shapes and types "
            "(declared --input-shape sizes may help)"
        )
    if notes:
        return no_rule + failed, "; ".join(notes)
    unsupported = _cpu_unsupported(ov, converted)
    return [], ("CPU plugin lacks OpenVINO ops " + ", ".join(unsupported)) if unsupported else "converts; CPU runs all"


def _cpu_unsupported(ov, model) -> list[str]:
    try:
        supported = ov.Core().query_model(model, "CPU")
    except Exception as exc:  # the plugin refuses the whole model
        return [str(exc).splitlines()[0][:120]]
    skip = {"Parameter", "Result", "Constant"}
    return sorted(
        {
            op.get_type_name()
            for op in model.get_ordered_ops()
            if op.get_friendly_name() not in supported and op.get_type_name() not in skip
        }
    )


def _tvm(path: Path, ops: Counter, opset: int, producers: dict[str, str]) -> tuple[list[str], str]:
    from tvm.relax.frontend.onnx import onnx_frontend

    converters = onnx_frontend._get_convert_map()  # tvm 0.27: no public accessor
    lacking = []
    for op in ops:
        converter = converters.get(op)
        if converter is None:
            lacking.append(op)
            continue
        try:
            converter.get_converter(opset)
        except Exception:  # no implementation at or below this opset
            lacking.append(op)
    return lacking, f"Relax ONNX importer at opset {opset}"


def format_preflight(rows: list[dict]) -> list[tuple[str, str]]:
    lines = []
    for row in rows:
        if not row["available"]:
            lines.append((f"backend {row['backend']}", row["note"]))
            continue
        verdict = "all operators" if not row["lacking"] else f"lacks {', '.join(row['lacking'])}"
        lines.append(
            (
                f"backend {row['backend']}",
                f"{len(row['supported'])} of "
                f"{len(row['supported']) + len(row['lacking'])} op types; "
                f"{verdict} ({row['note']})",
            )
        )
    return lines


def estimate_flops(model) -> int | None:
    """Multiply-adds x2 of Conv, MatMul and Gemm whose shapes inference can tell (dynamic axes as 1):
    an estimate; None when no such node has known shapes."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception:  # inference is best effort
        return None
    shapes = {
        value.name: [
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1 for d in value.type.tensor_type.shape.dim
        ]
        for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]
    }
    shapes.update({name: list(dims) for name, dims in weight_shapes(model).items()})
    total, known = 0, False
    for node in inferred.graph.node:
        if node.op_type not in ("Conv", "MatMul", "Gemm") or node.output[0] not in shapes:
            continue
        weight = shapes.get(node.input[1])
        if weight is None:
            continue
        total += 2 * _prod(shapes[node.output[0]]) * _per_output(node, weight)
        known = True
    return total if known else None


def weight_shapes(model) -> dict[str, tuple[int, ...]]:
    """Initializers and the tensors of Constant nodes (paddle2onnx and tf2onnx keep weights there)."""
    shapes = {init.name: tuple(init.dims) for init in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value" and attribute.HasField("t"):
                    shapes[node.output[0]] = tuple(attribute.t.dims)
    return shapes


def _per_output(node, weight: list[int]) -> int:
    """Multiply-adds per output element: the reduced size of the weight."""
    if node.op_type == "Conv":
        return _prod(weight[1:])
    if len(weight) < 2:
        return weight[0] if weight else 1
    if node.op_type == "MatMul":
        return weight[-2]
    return weight[1] if _transposed(node) else weight[0]


def _prod(values) -> int:
    result = 1
    for value in values:
        result *= int(value)
    return result


def _transposed(node) -> bool:
    return any(attribute.name == "transB" and attribute.i for attribute in node.attribute)
