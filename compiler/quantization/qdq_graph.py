"""What the passes that rewrite a quantized (QDQ) ONNX graph share: pairing its layers with the float
model's, a session that returns intermediate tensors, the first calibration rows, node attributes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def paired_nodes(float_model, int8_model, op_types: tuple[str, ...]) -> list[tuple]:
    """(int8 node, float node) for each node of `op_types`: by node name, or where the float graph's nodes
    are unnamed, by their order (onnxruntime's quantizer keeps both); none when neither pairs them."""
    float_nodes = [n for n in float_model.graph.node if n.op_type in op_types]
    int8_nodes = [n for n in int8_model.graph.node if n.op_type in op_types]
    if all(n.name for n in float_nodes):
        by_name = {n.name: n for n in float_nodes}
        return [(n, by_name[n.name]) for n in int8_nodes if n.name in by_name]
    if [n.op_type for n in float_nodes] != [n.op_type for n in int8_nodes]:
        return []
    return list(zip(int8_nodes, float_nodes))


def probe_session(model, tensors: list[str]):
    """A CPU session of `model` up to the last node producing one of `tensors`, returning them as computed
    by the graph as written (no optimisation: every tensor keeps its name)."""
    import onnx

    from ..ort_sessions import cpu_session

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    # only the nodes up to the last one producing a wanted tensor (the graph is topologically sorted)
    last = max(i for i, node in enumerate(probe.graph.node) if set(node.output) & set(tensors))
    del probe.graph.node[last + 1 :]
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(t) for t in tensors)
    return cpu_session(probe.SerializeToString(), optimize=False)


def first_rows(feeds: Sequence[dict[str, np.ndarray]], samples: int) -> list[dict[str, np.ndarray]]:
    """The first feeds holding at least `samples` rows in all (every feed when they hold fewer)."""
    chosen, rows = [], 0
    for feed in feeds:
        if rows >= samples:
            break
        chosen.append(feed)
        rows += len(next(iter(feed.values())))
    return chosen


def attribute(node, name: str, default):
    """A node attribute's value, or `default` where the node does not set it."""
    from onnx import helper

    for item in node.attribute:
        if item.name == name:
            return helper.get_attribute_value(item)
    return default
