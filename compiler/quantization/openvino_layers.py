"""Per-layer diagnostics for the OpenVINO int8 path: the same rows `sensitivity.layer_report` writes
for ONNX Runtime, measured on IR. A quantized layer is a node NNCF put a FakeQuantize in front of
(possibly through reshapes and transposes) or whose weights it stored as low-precision integers; its
output is compared with the same node's output in the float IR (matched by friendly name) on the
calibration batches, read from sub-models cut at those outputs and compiled on their own. Layers the
plain quantize has and the given int8 model lacks were returned to float (NNCF's accuracy control)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .sensitivity import sqnr_from_energy

# Ops that only move or retype data: a FakeQuantize seen through them still feeds the next layer.
PASS_THROUGH = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Convert"})
# Ops that select part of a quantized activation (NNCF puts the pooler's FakeQuantize before the
# Gather of the first token): the layer is the op after them. Integer weights into a Gather make
# the Gather itself the quantized layer (an embedding lookup).
SELECTING = frozenset({"Gather", "Slice", "StridedSlice", "Split", "VariadicSplit"})
NOT_LAYERS = frozenset({"ShapeOf", "Result"})  # read shapes or end the graph: nothing quantized there
LOW_PRECISION = frozenset({"i4", "u4", "i8", "u8"})
MAX_BATCHES = 4  # as many calibration batches as the ONNX Runtime report reads
# Extra outputs change the CPU plugin's fusions. On int8 IR that changes the numbers (OpenVINO 2026.4
# returned zeros for an NNCF MatMul whose producer was also an output, and shifted later layers), so
# each int8 layer is read from a sub-model cut at that layer alone. Float IR read with many outputs
# matched the one-output sub-models exactly (tiny and MiniLM-sized BERTs), so float layers are read
# this many at a time (their outputs over every batch are held in memory together).
FLOAT_GROUP = 8


@dataclass
class _Energy:
    """Running sums over batches: the SQNR of all batches together, and the float output's range."""

    signal: float = 0.0
    noise: float = 0.0
    low: float = float("inf")
    high: float = float("-inf")

    def add(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        ref = reference.astype(np.float64)
        self.signal += float(np.square(ref).sum())
        self.noise += float(np.square(ref - candidate.astype(np.float64)).sum())
        self.low, self.high = min(self.low, float(ref.min())), max(self.high, float(ref.max()))


def quantized_layers(model) -> dict[str, str]:
    """Friendly name -> op type of every node fed by a FakeQuantize or by integer weights, in graph order."""
    ops = model.get_ordered_ops()
    constant = _constant_derived(ops)
    found = {}
    for op in ops:
        if op.get_type_name() == "FakeQuantize" or (op.get_type_name() == "Constant" and _low_precision(op)):
            through = PASS_THROUGH if op.get_name() in constant else PASS_THROUGH | SELECTING
            for layer in _first_layers(op, constant, through):
                found[layer.get_friendly_name()] = layer.get_type_name()
    order = {op.get_friendly_name(): i for i, op in enumerate(ops)}
    return dict(sorted(found.items(), key=lambda item: order[item[0]]))


def kept_float_layers(int8_model, plain_int8_model) -> list[str]:
    """Layers the plain quantize of the same model quantizes and `int8_model` leaves in float."""
    current = quantized_layers(int8_model)
    return [name for name in quantized_layers(plain_int8_model) if name not in current]


def openvino_layer_report(
    float_model,
    int8_model,
    feeds: Iterable[dict[str, np.ndarray]],
    *,
    plain_int8_model=None,
    threads: int | None = None,
) -> list[dict[str, Any]]:
    """One row per quantized layer (and per layer returned to float), with `layer_report`'s keys and
    `kept_float`. A layer whose name does not match exactly one float node gets no SQNR. Both models
    run in f32 apart from the int8 layers, as the runtime runs the artifact; `threads` None: all cores."""
    current = quantized_layers(int8_model)
    plain = current if plain_int8_model is None else quantized_layers(plain_int8_model)
    names = list(plain) + [name for name in current if name not in plain]
    float_nodes, int8_nodes = _unique_nodes(float_model), _unique_nodes(int8_model)
    measured = [
        name
        for name in names
        if name in float_nodes and name in int8_nodes and _is_float(float_nodes[name]) and _is_float(int8_nodes[name])
    ]
    batches = list(feeds)[:MAX_BATCHES]
    energy: dict[str, _Energy | None] = {}
    for start in range(0, len(measured), FLOAT_GROUP):
        group = measured[start : start + FLOAT_GROUP]
        for name, reference in zip(group, _outputs_of(float_model, group, batches, threads)):
            energy[name] = _compare(reference, _outputs_of(int8_model, [name], batches, threads)[0])
    return [
        _row(
            name,
            current.get(name) or plain[name],
            name in current,
            name in plain and name not in current,
            float_nodes.get(name),
            energy.get(name) if batches else None,
        )
        for name in names
    ]


def _row(name: str, op: str, int8: bool, kept_float: bool, float_node, sums: _Energy | None) -> dict[str, Any]:
    weights = _weight_range(float_node) if float_node is not None else None
    row = {
        "node": name,
        "op": op,
        "int8": int8,
        "sqnr_db": None,
        "activation_min": None,
        "activation_max": None,
        "weight_min": weights and weights[0],
        "weight_max": weights and weights[1],
        "kept_float": kept_float,
    }
    if sums is not None:
        row.update(sqnr_db=sqnr_from_energy(sums.signal, sums.noise), activation_min=sums.low, activation_max=sums.high)
    return row


def _compare(reference: list[np.ndarray], candidate: list[np.ndarray]) -> _Energy | None:
    """Sums over the batches; None when the shapes disagree."""
    energy = _Energy()
    for ref, got in zip(reference, candidate):
        if ref.shape != got.shape:
            return None
        energy.add(ref, got)
    return energy


def _outputs_of(model, names: list[str], batches: list[dict[str, np.ndarray]], threads: int | None) -> list[list]:
    """Per name, its node's first output on each batch, from a copy of `model` cut at those outputs
    and compiled on its own."""
    import openvino as ov

    copy = model.clone()
    nodes = {op.get_friendly_name(): op for op in copy.get_ops()}
    sub = ov.Model([nodes[name].output(0) for name in names], copy.get_parameters(), "layer outputs")
    config = {"INFERENCE_PRECISION_HINT": "f32"} | ({} if threads is None else {"INFERENCE_NUM_THREADS": threads})
    compiled = ov.Core().compile_model(sub, "CPU", config)
    request, values = compiled.create_infer_request(), [[] for _ in names]
    for feed in batches:
        results = request.infer(feed, share_inputs=False, share_outputs=False)
        for port, collected in zip(compiled.outputs, values):
            collected.append(np.array(results[port], copy=True))
    return values


def _unique_nodes(model) -> dict[str, Any]:
    """Friendly name -> node, leaving out names that more than one node carries."""
    ops = model.get_ops()
    counts = Counter(op.get_friendly_name() for op in ops)
    return {op.get_friendly_name(): op for op in ops if counts[op.get_friendly_name()] == 1}


def _is_float(node) -> bool:
    return node.get_output_size() > 0 and node.get_output_element_type(0).is_real()


def _low_precision(constant) -> bool:
    return constant.get_output_element_type(0).get_type_name() in LOW_PRECISION


def _constant_derived(ops) -> set[str]:
    """Unique names of nodes computed from constants only (weights and their decompression chains)."""
    derived: set[str] = set()
    for op in ops:  # topological order: inputs come first
        inputs = [op.input_value(i).get_node().get_name() for i in range(op.get_input_size())]
        if op.get_type_name() == "Constant" or (inputs and all(name in derived for name in inputs)):
            derived.add(op.get_name())
    return derived


def _first_layers(start, constant: set[str], through: frozenset[str]) -> list:
    """The first consumers of `start` that are neither pass-through ops nor weight arithmetic."""
    found, stack, seen = [], [start], set()
    while stack:
        node = stack.pop()
        for output in node.outputs():
            for target in output.get_target_inputs():
                consumer = target.get_node()
                name = consumer.get_name()  # unique, unlike friendly names
                if name in seen or consumer.get_type_name() in NOT_LAYERS:
                    continue
                seen.add(name)
                if consumer.get_type_name() in through or name in constant:
                    stack.append(consumer)
                else:
                    found.append(consumer)
    return found


def _weight_range(node) -> tuple[float, float] | None:
    """Range of the node's first constant input of rank >= 2, seen through pass-through ops."""
    for i in range(node.get_input_size()):
        producer = node.input_value(i).get_node()
        while producer.get_type_name() in PASS_THROUGH and producer.get_input_size() >= 1:
            producer = producer.input_value(0).get_node()
        if producer.get_type_name() == "Constant" and len(producer.get_output_partial_shape(0)) >= 2:
            data = np.asarray(producer.get_data(), dtype=np.float64)
            return float(data.min()), float(data.max())
    return None
