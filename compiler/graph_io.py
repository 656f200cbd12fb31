"""Reading ONNX files safely and describing their inputs and outputs."""

from __future__ import annotations

from pathlib import Path

from edgekiln.runtime.manifest import TensorSpec

from .errors import CompileError


def load_onnx(path: Path, *, load_external_data: bool = True):
    import onnx

    if not path.is_file():
        raise CompileError(f"ONNX file {path} does not exist")
    from onnx.external_data_helper import load_external_data_for_model

    from .onnx_external import data_files

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, ...
        raise CompileError(
            f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})",
            hint="the file may be truncated or not ONNX; re-export or re-download it",
        ) from None
    data_files(path, model)  # its data files lie in its folder, as files: checked before any is read
    try:
        if load_external_data:
            load_external_data_for_model(model, str(path.parent))
    except Exception as exc:  # a data file shorter than its tensors, ...
        raise CompileError(
            f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})",
            hint="the external-data files may be truncated; re-export or re-download them",
        ) from None
    try:
        onnx.checker.check_model(str(path))
    except Exception as exc:  # onnx.checker.ValidationError and friends
        raise CompileError(
            f"{path} is not a valid ONNX model: {str(exc).splitlines()[0]}",
            hint="re-export it; `python -m onnx.checker` shows the details",
        ) from None
    if not model.graph.input or not model.graph.output:
        raise CompileError(f"{path} has no graph inputs or outputs")
    return model


def load_graph(path: Path):
    """An ONNX file's ModelProto without its external weights."""
    import onnx

    return onnx.load(str(path), load_external_data=False)


def file_io(path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """`graph_io` of an ONNX file, read without its weights."""
    return graph_io(load_graph(path))


def graph_io(model) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Input and output specs of a graph; initializers listed as inputs are left out. An integer input
    that only indexes fixed tables carries the values they accept (`value_range`)."""
    initializers = {init.name for init in model.graph.initializer}
    ranges = index_ranges(model.graph)
    inputs = tuple(
        _spec(value).model_copy(update={"value_range": ranges.get(value.name)})
        for value in model.graph.input
        if value.name not in initializers
    )
    outputs = tuple(_spec(value) for value in model.graph.output)
    return inputs, outputs


def index_ranges(graph) -> dict[str, tuple[int, int]]:
    """For each graph input whose every use is the indices of a Gather from an initializer: the indices
    all those tables accept, [-rows, rows - 1] (ONNX counts negative ones from the end). An input used
    anywhere else (another operator, a subgraph) has none: its values may mean something else there."""
    rows = {init.name: list(init.dims) for init in graph.initializer}
    uses: dict[str, list] = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            uses.setdefault(name, []).append((node, position))
    in_subgraphs = _subgraph_inputs(graph)
    ranges = {}
    for value in graph.input:
        limits = [_gathered_rows(node, position, rows) for node, position in uses.get(value.name, ())]
        if limits and None not in limits and value.name not in in_subgraphs:
            smallest = min(limits)
            ranges[value.name] = (-smallest, smallest - 1)
    return ranges


def _gathered_rows(node, position: int, rows: dict[str, list[int]]) -> int | None:
    """The rows of the table a Gather indexes with its input `position`, or None for any other use."""
    if node.op_type != "Gather" or node.domain not in ("", "ai.onnx") or position != 1 or node.input[0] not in rows:
        return None
    dims = rows[node.input[0]]
    axis = next((attr.i for attr in node.attribute if attr.name == "axis"), 0)
    if not dims or not -len(dims) <= axis < len(dims) or dims[axis] <= 0:
        return None
    return int(dims[axis])


def _subgraph_inputs(graph) -> set[str]:
    """Every name a node inside an If/Loop/Scan body reads (they may read the outer graph's inputs)."""
    names: set[str] = set()
    for node in graph.node:
        for attr in node.attribute:
            for body in [attr.g] if attr.HasField("g") else list(attr.graphs):
                for inner in body.node:
                    names.update(inner.input)
                names |= _subgraph_inputs(body)
    return names


_NOT_TENSORS = {"sequence_type": "a sequence", "map_type": "a map", "optional_type": "an optional value"}


def _spec(value) -> TensorSpec:
    import onnx

    kind = value.type.WhichOneof("value")
    if kind != "tensor_type" or not value.type.tensor_type.elem_type:
        what = _NOT_TENSORS.get(kind, "a sparse tensor" if kind == "sparse_tensor_type" else "untyped")
        raise CompileError(
            f"graph input or output {value.name!r} is {what}, not a tensor; edgekiln's artifacts take and give tensors",
            hint="export the model without it (scikit-learn classifiers: skl2onnx options={'zipmap': False}), "
            "or end the graph at tensors",
        )
    tensor_type = value.type.tensor_type
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).name
    shape = []
    for position, dim in enumerate(tensor_type.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value >= 0:  # -1 (some exporters): dynamic
            shape.append(int(dim.dim_value))
        else:
            named = dim.dim_param if dim.dim_param not in ("", "?") else None  # paddle2onnx writes "?"
            shape.append(named or f"{value.name}_dim{position}")
    return TensorSpec(name=value.name, dtype=dtype, shape=tuple(shape))


QUANTIZED_OPS = frozenset(
    (
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "QLinearConv",
        "QLinearMatMul",
        "MatMulInteger",
        "ConvInteger",
        "MatMulIntegerToFloat",
        "QGemm",
        "QLinearAdd",
        "DynamicQuantizeMatMul",
    )
)


def quantized_ops(model) -> list[str]:
    """The int8 operators (QDQ or integer) a model (a loaded ModelProto, or a file) holds, sorted: none
    for a float model."""
    if isinstance(model, (str, Path)):
        model = load_graph(Path(model))
    return sorted({node.op_type for node in model.graph.node} & QUANTIZED_OPS)


def refuse_quantized(path: Path, name: str) -> None:
    """A model that is already int8 (QDQ or integer operators) is not quantized again: one error, not
    the quantizer's failure deep inside."""
    found = quantized_ops(path)
    if found:
        raise CompileError(
            f"{name} is already quantized (it holds {', '.join(found[:3])})",
            hint="compile it without --quantize: its int8 operators run as they are",
        )
