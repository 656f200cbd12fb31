"""Shapes written into the graph `check_onnx` keeps: declared input shapes (fixed sizes become fixed
dimensions, a range becomes an axis named `NAME[MIN..MAX:MULTIPLE]` that the runtime reads back),
and output shapes that the file declared empty or wrong, recomputed by shape inference and, where
inference cannot tell, by running the model on two input shapes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import CompileError
from .input_shapes import DimRange, InputShapes, ShapePlan, range_name


def declare_inputs(model, declared: InputShapes | None) -> None:
    """Write the declared sizes and ranges into `model`'s graph inputs (in place)."""
    if not declared:
        return
    for value in model.graph.input:
        dims = declared.get(value.name)
        if dims is None:
            continue
        shape = value.type.tensor_type.shape
        for axis, (proto, dim) in enumerate(zip(shape.dim, dims, strict=False)):
            base = proto.dim_param or f"{value.name}_dim{axis}"
            if isinstance(dim, DimRange):
                proto.Clear()
                proto.dim_param = range_name(base, dim)
            else:
                proto.Clear()
                proto.dim_value = dim


def recompute_outputs(model):
    """`model` with each graph output's shape replaced by the inferred one where the file declares
    none, a different rank, or a fixed size that inference contradicts. Returns (model, names of the
    outputs shape inference could not describe)."""
    import onnx

    declared = {value.name: _dims(value) for value in model.graph.output}
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for value in probe.graph.output:
        value.type.tensor_type.ClearField("shape")
    try:
        inferred_model = onnx.shape_inference.infer_shapes(probe, strict_mode=False)
    except Exception:  # inference is best effort: a real run decides
        inferred_model = probe
    inferred = {value.name: value for value in inferred_model.graph.output}
    unknown = []
    for value in model.graph.output:
        guess = inferred.get(value.name)
        guess_dims = _dims(guess) if guess is not None else None
        if guess_dims is None:
            if declared[value.name] is None:
                unknown.append(value.name)
            continue
        if _wrong(declared[value.name], guess_dims):
            value.type.tensor_type.shape.CopyFrom(guess.type.tensor_type.shape)
    return model, unknown


def _dims(value) -> list | None:
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim]


def _wrong(declared: list | None, inferred: list) -> bool:
    if declared is None or len(declared) != len(inferred):
        return True
    return any(a is not None and b is not None and a != b for a, b in zip(declared, inferred, strict=True))


def outputs_from_runs(path: Path, plan: ShapePlan, names: list[str]) -> dict[str, list]:
    """Output shapes measured by running the saved model on its smallest and largest declared shapes
    (or two batch/sequence sizes): a size that changes between the runs is a dynamic axis."""
    from .input_shapes import plan_feeds
    from .ort_sessions import cpu_session

    rng = np.random.default_rng(0)
    session = cpu_session(path, optimize=False)
    wanted = [output.name for output in session.get_outputs()]
    try:
        first = dict(zip(wanted, session.run(None, plan_feeds(plan, 1, 8, rng, "min")), strict=True))
        second = dict(zip(wanted, session.run(None, plan_feeds(plan, 2, 17, rng, "max")), strict=True))
    except Exception as exc:  # onnxruntime's errors: the shape was not one the model takes
        raise CompileError(
            f"the file declares no shape for output(s) {names}, and running it to measure them "
            f"failed: {str(exc).splitlines()[0][:200]}",
            hint=plan.suggestion(),
        ) from None
    shapes = {}
    for name in names:
        small, large = np.asarray(first[name]), np.asarray(second[name])
        if small.ndim != large.ndim:
            shapes[name] = [None] * small.ndim
            continue
        pairs = enumerate(zip(small.shape, large.shape, strict=True))
        shapes[name] = [a if a == b else f"{name}_dim{axis}" for axis, (a, b) in pairs]
    return shapes


def write_output_shapes(path: Path, shapes: dict[str, list]) -> None:
    """Set the measured output shapes in the saved model (its external data, if any, untouched)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for value in model.graph.output:
        if value.name not in shapes:
            continue
        shape = value.type.tensor_type.shape
        shape.Clear()
        for size in shapes[value.name]:
            dim = shape.dim.add()
            if isinstance(size, int):
                dim.dim_value = size
            elif size is not None:
                dim.dim_param = size
    onnx.save(model, str(path))
