"""What a compiled ONNX file is checked against.

The user's file run as written (ONNX Runtime, no graph optimisations) wherever ONNX Runtime can
still run it. Where it cannot (an opset whose kernels it dropped), the graph upgraded by
`onnx_upgrade` is the only runnable reference, and the report says that no independent reference
existed. Either way, a file that ships the model zoo's `test_data_set_*/input_N.pb, output_N.pb`
beside it is also checked against those stored outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from .errors import CompileError
from .graph_io import file_io, load_onnx
from .onnx_upgrade import apply, plan
from .ort_sessions import cpu_session

Runner = Callable[[dict[str, np.ndarray]], list[np.ndarray]]
TEST_DATA_GLOB = "test_data_set_*"
TEST_DATA_RTOL = 1e-3  # stored outputs come from another framework's kernels: relative tolerance as well


def session_runner(session) -> Runner:
    return lambda feeds: [np.asarray(output, dtype=np.float32) for output in session.run(None, feeds)]


def source_reference(path: Path) -> tuple[Runner, str]:
    try:
        return session_runner(cpu_session(path, optimize=False)), "source onnx (unoptimised onnxruntime)"
    except Exception as exc:  # onnxruntime's NOT_IMPLEMENTED and friends
        reason = str(exc).splitlines()[0][:200]
    model = load_onnx(path)
    conversion = plan(model)
    if conversion.to_opset is None:
        raise CompileError(
            f"onnxruntime cannot run {path.name}: {reason}",
            hint="upgrade onnxruntime, or re-export the model with operators it implements",
        )
    converted = apply(model, conversion, path.name)
    name = (
        f"converted onnx (opset {conversion.opset} -> {conversion.to_opset}, unoptimised onnxruntime); "
        f"no independent reference: onnxruntime cannot run the original ({reason})"
    )
    return session_runner(cpu_session(converted.SerializeToString(), optimize=False)), name


def test_data_files(path: Path) -> list[Path]:
    return sorted(
        file for folder in path.parent.glob(TEST_DATA_GLOB) if folder.is_dir() for file in folder.glob("*.pb")
    )


def shipped_cases(path: Path) -> list[tuple[str, dict[str, np.ndarray], list[np.ndarray]]]:
    """(folder name, inputs, expected outputs) of each `test_data_set_*` beside the model."""
    folders = sorted(folder for folder in path.parent.glob(TEST_DATA_GLOB) if folder.is_dir())
    if not folders:
        return []
    inputs, outputs = file_io(path)
    cases = []
    for folder in folders:
        given, expected = _read_tensors(folder, "input"), _read_tensors(folder, "output")
        if len(given) != len(inputs) or len(expected) != len(outputs):
            raise CompileError(
                f"{folder.name} beside {path.name} holds {len(given)} inputs and {len(expected)} "
                f"outputs; the model takes {len(inputs)} and returns {len(outputs)}",
                hint="remove the folder or fix its .pb files",
            )
        names = [name if name in {s.name for s in inputs} else spec.name for (name, _), spec in zip(given, inputs)]
        cases.append((folder.name, dict(zip(names, (array for _, array in given))), [array for _, array in expected]))
    return cases


def _read_tensors(folder: Path, prefix: str) -> list[tuple[str, np.ndarray]]:
    """`prefix_0.pb`, `prefix_1.pb`, … of a test-data folder, in order: (stored name, array)."""
    import onnx
    from onnx import numpy_helper

    tensors = []
    for file in sorted(folder.glob(f"{prefix}_*.pb"), key=lambda f: int(f.stem.split("_")[-1])):
        tensor = onnx.TensorProto()
        tensor.ParseFromString(file.read_bytes())
        tensors.append((tensor.name, numpy_helper.to_array(tensor)))
    return tensors


def check_shipped(cases, candidate: Runner, max_abs_diff: float) -> dict:
    """Each stored output within `max_abs_diff + TEST_DATA_RTOL * |expected|`, element by element."""
    from edgekiln.runtime.verify import min_row_cosine

    rows = []
    for name, feeds, expected in cases:
        got = candidate(feeds)
        excess, worst, cosine = 0.0, 0.0, 1.0
        for ref, out in zip(expected, got):
            ref = ref.astype(np.float32)
            if ref.shape != out.shape:
                raise CompileError(
                    f"{name}: the compiled model returns shape {list(out.shape)}, the stored output {list(ref.shape)}"
                )
            difference = np.abs(ref - out)
            worst = max(worst, float(difference.max(initial=0.0)))
            excess = max(excess, float((difference - TEST_DATA_RTOL * np.abs(ref)).max(initial=0.0)))
            cosine = min(cosine, min_row_cosine(ref, out))
        rows.append({"case": name, "max_abs_diff": worst, "min_cosine": cosine, "passed": excess <= max_abs_diff})
    return {
        "tolerance": {"atol": max_abs_diff, "rtol": TEST_DATA_RTOL},
        "cases": rows,
        "passed": all(row["passed"] for row in rows),
    }
