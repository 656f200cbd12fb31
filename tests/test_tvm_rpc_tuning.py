"""Tuning over TVM's RPC (`--tune-remote`): candidates measured by a TVM RPC server (here one on
loopback, started by the test), records in the same database as local tuning, applied by later compiles."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("tvm")

from edgekiln.cli.main import main  # noqa: E402
from edgekiln.compiler import Recipe, compile  # noqa: E402
from edgekiln.compiler.errors import CompileError  # noqa: E402
from edgekiln.compiler.passes.lower_tvm_setup import TvmOptions  # noqa: E402
from edgekiln.compiler.tvm_build.remote import check_remote, parse_remote  # noqa: E402
from edgekiln.compiler.tvm_build.tuning_db import RECORDS, WORKLOADS  # noqa: E402

PROFILE = "x86-64-avx2"
ATOL = 1e-4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def _tvm_process(module: str, port: int, *extra: str):
    """`python -m tvm.exec.MODULE` listening on a loopback port, stopped on exit."""
    process = subprocess.Popen(
        [sys.executable, "-m", f"tvm.exec.{module}", "--host", "127.0.0.1", "--port", str(port)]
        + ["--port-end", str(port + 1), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"TVM's {module} did not start on port {port}")
                time.sleep(0.2)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def rpc_server():
    """TVM's own RPC server on a free loopback port, stopped at teardown."""
    port = _free_port()
    with _tvm_process("rpc_server", port):
        yield f"127.0.0.1:{port}"


def _matmul(path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((32, 16)).astype(np.float32) * 0.3
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "matmul",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 16])],
        [numpy_helper.from_array(weight, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _compile(model, out, cache, **flags):
    recipe = Recipe.from_flags(backend="tvm", cache_dir=str(cache), **flags)
    result = compile(model, PROFILE, out, recipe)
    return result.path, json.loads((result.path / "reports" / "lower_tvm.json").read_text())["details"]


def _matches_onnxruntime(artifact, model) -> None:
    import onnxruntime as ort

    from edgekiln.runtime import load

    x = np.random.default_rng(5).standard_normal((1, 32)).astype(np.float32)
    want = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(load(artifact).run({"x": x})["y"], want, atol=ATOL)


def _lines(path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tuning_over_rpc_fills_the_database_that_later_compiles_apply(tmp_path, rpc_server):
    pytest.importorskip("xgboost")
    model, cache = tmp_path / "matmul.onnx", tmp_path / "cache"
    _matmul(model)
    artifact, tuned = _compile(model, tmp_path / "tuned", cache, tune_trials=2, tune_remote=rpc_server)
    assert tuned["tune_remote"] == rpc_server
    assert tuned["tune_trials"] >= 2, "candidates were measured through the server"
    assert tuned["tuning_database"]["records"] >= 1 and tuned["tuning_database"]["kernels_from_database"] >= 1
    _matches_onnxruntime(artifact, model)

    (folder,) = (cache / "tvm-tuning").iterdir()
    workloads, records = _lines(folder / WORKLOADS), _lines(folder / RECORDS)
    assert all(len(w) == 2 and isinstance(w[0], str) for w in workloads)  # [structural hash, module]
    measured = [body for index, body in records if 0 <= index < len(workloads)]
    assert len(measured) == len(records) >= 1
    trace, seconds, target, args = measured[0]
    assert target["kind"] == "llvm" and seconds and all(0 < s < 1 for s in seconds), "run on the server"

    artifact, applied = _compile(model, tmp_path / "applied", cache)  # untuned: applies the records
    assert applied["tune_trials"] == 0 and "tune_remote" not in applied
    assert applied["tuning_database"]["fingerprint"] == tuned["tuning_database"]["fingerprint"]
    assert applied["tuning_database"]["kernels_from_database"] == tuned["tuning_database"]["kernels_from_database"]
    _matches_onnxruntime(artifact, model)


@pytest.mark.parametrize(
    "address", ["board", "board:", "board:0", "board:70000", "tracker://h:9190", "tracker://h:9190/", "http://h:1"]
)
def test_a_malformed_address_is_one_clear_error(address):
    with pytest.raises(CompileError, match="is not an address: give HOST:PORT .* or tracker://HOST:PORT/KEY"):
        TvmOptions(tune_trials=4, tune_remote=address)


def test_the_cli_reports_a_bad_address_in_one_line(tmp_path, capsys):
    model = tmp_path / "matmul.onnx"
    _matmul(model)
    argv = ["compile", str(model), "--target", PROFILE, "--backend", "tvm", "-o", str(tmp_path / "out")]
    assert main([*argv, "--tune-trials", "2", "--tune-remote", "board-9090"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) <= 2 and "--tune-remote 'board-9090' is not an address" in err[0], err
    assert "Traceback" not in "\n".join(err)


def test_addresses_parse_to_a_server_or_a_tracker_and_key():
    assert parse_remote("192.168.1.20:9090").model_dump() == {
        "kind": "server",
        "host": "192.168.1.20",
        "port": 9090,
        "key": None,
    }
    tracker = parse_remote("tracker://lab-host:9190/rk3588")
    assert (tracker.kind, tracker.host, tracker.port, tracker.key) == ("tracker", "lab-host", 9190, "rk3588")
    assert str(tracker) == "tracker://lab-host:9190/rk3588"
    ipv6 = parse_remote("[::1]:9090")
    assert (ipv6.host, ipv6.port, str(ipv6)) == ("::1", 9090, "[::1]:9090")
    assert TvmOptions(tune_trials=4, tune_remote=" [::1]:9090").tune_remote == "[::1]:9090", "stored normalised"


def test_a_remote_without_a_tuning_budget_is_refused():
    with pytest.raises(CompileError, match="no tuning was asked for"):
        TvmOptions(tune_remote="127.0.0.1:9090")


@pytest.mark.timeout(60)
def test_nothing_listening_is_one_clear_error_naming_the_address_and_the_fix(tmp_path):
    port = _free_port()  # closed again: nothing listens there
    model = tmp_path / "matmul.onnx"
    _matmul(model)
    with pytest.raises(CompileError) as caught:
        _compile(model, tmp_path / "out", tmp_path / "cache", tune_trials=2, tune_remote=f"127.0.0.1:{port}")
    assert f"cannot reach the TVM RPC server at 127.0.0.1:{port}" in str(caught.value)
    assert "tvm.exec.rpc_server" in caught.value.hint


@pytest.mark.timeout(30)
def test_a_listener_that_is_no_rpc_server_times_out_with_one_error():
    with socket.socket() as silent:  # accepts connections, never answers TVM's handshake
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with pytest.raises(CompileError, match=f"127.0.0.1:{port} accepted the connection but gave no TVM RPC"):
            check_remote(parse_remote(f"127.0.0.1:{port}"), timeout=1)


@pytest.mark.timeout(120)
def test_a_tracker_gives_the_server_registered_under_the_key():
    pytest.importorskip("tornado", reason="TVM's tracker needs tornado")
    tracker = _free_port()
    server = ("--tracker", f"127.0.0.1:{tracker}", "--key", "board")
    with _tvm_process("rpc_tracker", tracker), _tvm_process("rpc_server", _free_port(), *server):
        deadline = time.monotonic() + 30  # the server registers with the tracker after it starts
        while True:
            try:
                check_remote(parse_remote(f"tracker://127.0.0.1:{tracker}/board"), timeout=3)
                break
            except CompileError:
                if time.monotonic() > deadline:
                    raise
        with pytest.raises(CompileError, match="gave no server for key 'other' within 1 s") as caught:
            check_remote(parse_remote(f"tracker://127.0.0.1:{tracker}/other"), timeout=1)
        assert "--key other" in caught.value.hint
