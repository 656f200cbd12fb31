"""Per-layer diagnostics: SQNR of each quantized node's output against the float model on
calibration inputs, plus weight and activation ranges. Statistics only; no rewriting here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..ort_sessions import cpu_session
from .calibration import CalibrationSet


def layer_report(
    float_path: Path,
    quant_path: Path,
    nodes: list[str],
    calibration: CalibrationSet | None,
    fallback_feeds: tuple[dict[str, np.ndarray], ...],
) -> list[dict]:
    """One row per node: name, op, sqnr_db (higher is better), weight and activation ranges."""
    import onnx

    float_model = onnx.load(str(float_path), load_external_data=False)  # weights read one tensor at a time
    quant_model = onnx.load(str(quant_path), load_external_data=False)
    pairs = _node_outputs(float_model, nodes, quant_model)
    feeds = calibration.feeds[:4] if calibration is not None else fallback_feeds
    reference = _intermediates(float_path, [ref for ref, _, _ in pairs.values()], feeds)
    quantized = _intermediates(quant_path, [got for _, got, _ in pairs.values()], feeds)
    weights = _weight_ranges(float_model, float_path.parent)
    ops = {node.name: node.op_type for node in float_model.graph.node}
    integer = integer_nodes(quant_model, nodes)
    rows = []
    for node, (ref_tensor, got_tensor, clamp) in pairs.items():
        ref, got = reference.get(ref_tensor), quantized.get(got_tensor)
        if got is not None and clamp is not None:  # the folded activation, applied as the float graph does
            got = [np.clip(g, *clamp) for g in got]
        row = {
            "node": node,
            "op": ops[node],
            "int8": node in integer,
            "sqnr_db": None,
            "activation_min": None,
            "activation_max": None,
            "weight_min": weights.get(node, (None, None))[0],
            "weight_max": weights.get(node, (None, None))[1],
        }
        if ref is not None and got is not None:
            row.update(
                sqnr_db=sqnr_db(ref, got),
                activation_min=float(min(r.min() for r in ref)),
                activation_max=float(max(r.max() for r in ref)),
            )
        rows.append(row)
    return rows


def integer_nodes(quantized_model, nodes: list[str]) -> set[str]:
    """Which of `nodes` the quantizer turned into integer arithmetic: replaced outright (dynamic
    mode renames them), or fed only by DequantizeLinear (QDQ mode keeps the float node)."""
    producers = {out: node.op_type for node in quantized_model.graph.node for out in node.output}
    remaining = {node.name: node for node in quantized_model.graph.node}
    found = set()
    for name in nodes:
        node = remaining.get(name)
        if node is None or (node.input and all(producers.get(i) == "DequantizeLinear" for i in node.input if i)):
            found.add(name)
    return found


def sqnr_db(reference: list[np.ndarray], candidate: list[np.ndarray]) -> float:
    signal = sum(float(np.square(r.astype(np.float64)).sum()) for r in reference)
    noise = sum(float(np.square(r.astype(np.float64) - c).sum()) for r, c in zip(reference, candidate))
    return sqnr_from_energy(signal, noise)


def sqnr_from_energy(signal: float, noise: float) -> float:
    """SQNR in dB from summed squares of the reference and of the error (200 dB when exact)."""
    if noise == 0:
        return 200.0
    return 10 * math.log10(max(signal, 1e-30) / noise)


ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "HardSigmoid", "Sigmoid", "HardSwish")


def _node_outputs(model, nodes: list[str], quantized_model) -> dict[str, tuple[str, str, tuple | None]]:
    """Node -> (the float graph's tensor, the quantized graph's, a clamp for the latter) its SQNR is
    measured on: its output in both; or, where the QDQ quantizer folded the activation after it (Conv ->
    Relu: the Conv now writes the Relu's output name, and the clamp is its QuantizeLinear's), the
    activation's output against the Conv's with the activation's clamp applied, so that folded and
    unfolded layers are measured alike (before their output's quantization); an activation with no
    constant clamp: against what the int8 graph dequantizes there."""
    wanted = set(nodes)
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    present = {v for node in quantized_model.graph.node for v in node.output}
    constants = {init.name: init for init in model.graph.initializer}
    dequantized = _dequantized(quantized_model)
    pairs = {}
    for node in model.graph.node:
        if node.name not in wanted:
            continue
        tensor, after = node.output[0], consumers.get(node.output[0], [])
        if tensor in present or len(after) != 1 or after[0].op_type not in ACTIVATIONS:
            pairs[node.name] = (tensor, tensor, None)
            continue
        folded = after[0].output[0]
        clamp = _clamp(after[0], constants)
        got = folded if clamp is not None else dequantized.get(folded, folded)
        pairs[node.name] = (folded, got, clamp)
    return pairs


def _clamp(activation, constants) -> tuple[float, float] | None:
    """(low, high) of a Relu or a Clip with constant bounds; None for another activation."""
    from onnx import numpy_helper

    if activation.op_type == "Relu":
        return 0.0, np.inf
    if activation.op_type != "Clip":
        return None
    bounds = [-np.inf, np.inf]
    for attribute in activation.attribute:  # opset < 11
        if attribute.name in ("min", "max"):
            bounds[attribute.name == "max"] = attribute.f
    for index, name in enumerate(activation.input[1:3]):  # opset >= 11: optional inputs
        if name:
            if name not in constants:
                return None
            bounds[index] = float(numpy_helper.to_array(constants[name]))
    return bounds[0], bounds[1]


def _dequantized(model) -> dict[str, str]:
    """Tensor -> the output of the QuantizeLinear -> DequantizeLinear pair that follows it."""
    quantized_by = {node.input[0]: node.output[0] for node in model.graph.node if node.op_type == "QuantizeLinear"}
    dequantized_from = {
        node.input[0]: node.output[0] for node in model.graph.node if node.op_type == "DequantizeLinear"
    }
    return {t: dequantized_from[q] for t, q in quantized_by.items() if q in dequantized_from}


def _intermediates(path: Path, tensors: list[str], feeds) -> dict[str, list[np.ndarray]]:
    """Values of `tensors` (those the graph still has) over every feed batch."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    existing = {v for node in model.graph.node for v in node.output}
    present = [t for t in tensors if t in existing]
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=t) for t in present if t not in known)
    session = cpu_session(model.SerializeToString(), optimize=False, data_folder=path.parent)  # weights stay on disk
    collected: dict[str, list[np.ndarray]] = {t: [] for t in present}
    for feed in feeds:
        for name, value in zip(present, session.run(present, feed)):
            collected[name].append(np.asarray(value, dtype=np.float32))
    return collected


def _weight_ranges(model, folder: Path) -> dict[str, tuple[float, float]]:
    from onnx import numpy_helper

    initializers = {init.name: init for init in model.graph.initializer}
    ranges = {}
    for node in model.graph.node:
        for name in node.input:
            if name in initializers and len(initializers[name].dims) >= 2:
                array = numpy_helper.to_array(initializers[name], base_dir=str(folder))
                ranges[node.name] = (float(array.min()), float(array.max()))
                break
    return ranges
