"""ONNX -> Relax at fixed shapes. TVM 0.27's importer cannot infer the shapes of a transformers
export's attention-mask arithmetic (Range/broadcast); simplifying the graph with every input shape
fixed (onnxslim) folds it away, and the folded integer tensors become Constant nodes so the importer
reads their values. Weights are detached so buckets can share one copy; the int8 products' weights
are packed here, once (int8_prepack)."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from ..errors import CompileError
from .int8_prepack import prepack_int8


def import_fixed(onnx_path: Path, shapes: dict[str, list[int]], *, pack_int8: bool = True):
    """(Relax IRModule whose `main` takes the inputs then the weights, the weights as numpy arrays).
    `pack_int8`: rewrite QDQ products into integer ones with packed weights (CPU targets only)."""
    import onnx
    from tvm.relax.frontend import detach_params
    from tvm.relax.frontend.onnx import from_onnx

    model = onnx.load(str(onnx_path))
    described = ", ".join(f"{name}:{','.join(map(str, dims))}" for name, dims in shapes.items())
    try:
        model = _slim_fixed(model, [f"{n}:{','.join(map(str, d))}" for n, d in shapes.items() if d])
        _integers_as_constants(model.graph)
        mod = from_onnx(model, keep_params_in_input=True)
    except Exception as exc:  # onnxslim and TVM raise many types; name the stage and the shapes
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise CompileError(
            f"TVM cannot import the model at shapes {described}: {first}",
            hint="use --backend onnxruntime or openvino for this model",
        ) from None
    mod, params = detach_params(mod)
    weights = [p.numpy() for p in params.get("main", [])]
    return prepack_int8(mod, weights) if pack_int8 else (mod, weights)


_SLIM_ROUNDS = 4


def _slim_fixed(model, input_shapes: list[str]):
    """onnxslim at fixed shapes (a scalar input has no dimension to fix), repeated while shape
    arithmetic is left and the graph still shrinks: one call stops folding partway through a deep
    model (a 12-layer ViT kept the Shape ops of its last three layers, which TVM cannot import)."""
    import onnxslim

    for _ in range(_SLIM_ROUNDS):
        before = len(model.graph.node)
        with contextlib.redirect_stdout(io.StringIO()):
            model = onnxslim.slim(model, input_shapes=input_shapes)
        if not any(node.op_type == "Shape" for node in model.graph.node) or len(model.graph.node) >= before:
            break
    return model


_MAX_CONSTANT = 4096  # elements: shapes, axes, index tables, position ids; never a weight matrix


def _integers_as_constants(graph) -> None:
    """Turn integer initializers into Constant nodes. With keep_params_in_input every initializer is
    a parameter of `main`, whose values the Relax importer cannot see: an Expand or Reshape whose
    target shape is such a parameter gets an unknown output shape (Funnel's and XLM's attention
    masks), which later operators (Einsum, Reshape) refuse."""
    from onnx import TensorProto, helper

    integer, inputs = {TensorProto.INT64, TensorProto.INT32}, {value.name for value in graph.input}
    moved = [
        init
        for init in graph.initializer
        if init.data_type in integer and np.prod(init.dims, dtype=np.int64) <= _MAX_CONSTANT and init.name not in inputs
    ]
    if not moved:
        return
    names = {init.name for init in moved}
    kept = [init for init in graph.initializer if init.name not in names]
    nodes = [helper.make_node("Constant", [], [init.name], value=init) for init in moved] + list(graph.node)
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.node[:]
    graph.node.extend(nodes)


def main_inputs(mod) -> tuple[str, ...]:
    """The graph inputs Relax `main` takes, in its order, before the weights. Simplifying at fixed
    shapes drops an input only shape arithmetic read (a tokenizer's `token_type_ids` that DistilBERT
    or MPNet never uses), so this can be fewer than the ONNX file's inputs."""
    main = mod["main"]
    return tuple(str(param.name) for param in main.params[: int(main.attrs["num_input"])])


def param_key(array: np.ndarray) -> str:
    """Content address of a weight, so identical weights of different buckets are stored once."""
    import hashlib

    digest = hashlib.sha256(str((array.dtype.str, array.shape)).encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:24]
