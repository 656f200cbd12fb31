"""ONNX -> Relax at fixed shapes. TVM 0.27's importer cannot infer the shapes of a transformers
export's attention-mask arithmetic (Range/broadcast); simplifying the graph with every input shape
fixed (onnxslim) folds it away. Weights are detached so buckets can share one copy."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np

from ..errors import CompileError


def import_fixed(onnx_path: Path, shapes: dict[str, list[int]]):
    """(Relax IRModule whose `main` takes the inputs then the weights, the weights as numpy arrays)."""
    import onnx
    import onnxslim
    from tvm.relax.frontend import detach_params
    from tvm.relax.frontend.onnx import from_onnx

    model = onnx.load(str(onnx_path))
    described = ", ".join(f"{name}:{','.join(map(str, dims))}" for name, dims in shapes.items())
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model = onnxslim.slim(
                model, input_shapes=[f"{n}:{','.join(map(str, d))}" for n, d in shapes.items() if d]
            )  # a scalar input has no dimension to fix
        mod = from_onnx(model, keep_params_in_input=True)
    except Exception as exc:  # onnxslim and TVM raise many types; name the stage and the shapes
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise CompileError(
            f"TVM cannot import the model at shapes {described}: {first}",
            hint="use --backend onnxruntime or openvino for this model",
        ) from None
    mod, params = detach_params(mod)
    return mod, [p.numpy() for p in params.get("main", [])]


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
