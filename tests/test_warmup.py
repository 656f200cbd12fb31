"""`Session.warm_up` (runtime/warmup.py) on each kind of input, and `edgekiln serve` warming its models
up before it listens (OpenVINO's static shapes: tests/test_openvino_static.py)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.runtime import load
from edgekiln.runtime.errors import InputError

from .test_cli import run_cli


def test_a_text_artifact_warms_up_with_one_call(artifacts):
    session = load(artifacts["sequence"])
    feeds, _ = session.encoder.encode(["a warm start"])
    before = session.run(feeds)["logits"]
    warm = session.warm_up(batches=(1, 4))
    assert warm.shapes == ((1, 32), (4, 32)) and warm.seconds > 0
    np.testing.assert_array_equal(session.run(feeds)["logits"], before)
    with pytest.raises(InputError, match="positive integers"):
        session.warm_up(batches=(0,))


def _raw_model(path, second_axis):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])],
        "relu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", second_axis])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", second_axis])],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_raw_tensors_warm_up_only_where_their_sizes_are_known(tmp_path):
    from edgekiln.compiler import compile

    fixed = compile(_raw_model(tmp_path / "fixed.onnx", 6), "x86-64-avx2", tmp_path / "fixed")
    warm = load(fixed.path).warm_up()  # batch 1 at its fixed width 6
    assert warm.shapes == ((1, None),) and "1 warm-up call(s) (batch 1)" in warm.describe()
    free = compile(_raw_model(tmp_path / "free.onnx", "width"), "x86-64-avx2", tmp_path / "free")
    warm = load(free.path).warm_up()  # a width of unknown range: no made-up size is run
    assert warm.shapes == () and "no warm-up call" in warm.describe()


def test_serve_prints_each_model_s_warm_up(capsys, artifacts, monkeypatch):
    uvicorn = pytest.importorskip("uvicorn")
    ran = []
    # the socket serve bound (port 0: any free one), handed to uvicorn instead of serving forever
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: ran.append(sockets[0].getsockname()[1]))
    code, out, err = run_cli(capsys, "serve", f"clf={artifacts['sequence']}", "--port", "0")
    assert code == 0, err
    assert len(ran) == 1 and ran[0] > 0 and f"listening on http://127.0.0.1:{ran[0]}" in out
    assert "as model clf" in out and "1 warm-up call(s) (1x32)" in out
    code, out, err = run_cli(capsys, "serve", f"clf={artifacts['sequence']}", "--port", "0", "--no-warm-up")
    assert code == 0, err
    assert "warm-up" not in out


def test_each_tvm_bucket_length_gets_its_call(backend_artifacts):
    if "tvm" not in backend_artifacts:
        pytest.skip("the tvm extra is not installed")
    session = load(backend_artifacts["tvm"])  # one 16-token bucket
    assert session.backend.static_lengths == (16,)
    assert session.warm_up().shapes == ((1, 16),)


def test_a_failed_warm_up_stops_serve_in_one_line_naming_the_way_round(capsys, artifacts, monkeypatch):
    from edgekiln.runtime.session import Session

    def broken(self, batches=(1,)):
        raise RuntimeError("kernel lookup failed\nbackend details")

    monkeypatch.setattr(Session, "warm_up", broken)
    code, _, err = run_cli(capsys, "serve", f"clf={artifacts['sequence']}", "--port", "0")
    assert code == 2 and "Traceback" not in err, err
    line = next(line for line in err.splitlines() if line.startswith("edgekiln: error:"))
    assert "model clf" in line and "kernel lookup failed" in line and "--no-warm-up" in line
