"""`edgekiln serve` against requests built to hurt it: shapes whose sizes overflow 64-bit integers,
more rows than a request may hold, bodies that never finish, contradictory tensor fields, and an
unexpected failure (counted as the 500 it is). Bodies are decoded off the event loop."""

from __future__ import annotations

import json
import socket
import threading

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

from edgekiln.runtime import load  # noqa: E402
from edgekiln.runtime.serve import app as serve_app  # noqa: E402
from edgekiln.runtime.serve.app import Server  # noqa: E402
from edgekiln.runtime.serve.config import ServeConfig  # noqa: E402
from edgekiln.runtime.serve.models import ServedModel  # noqa: E402

from .serve_helpers import request, serving  # noqa: E402

ROWS = 4


@pytest.fixture(scope="module")
def served(artifacts):
    model = ServedModel("sequence", load(artifacts["sequence"]))
    config = ServeConfig(max_request_rows=ROWS, max_infer_rows=ROWS, body_timeout_seconds=0.5)
    with serving(Server([model], config)) as running:
        yield running


def _ids(rows: int, length: int = 4) -> dict:
    tensors = [
        {"name": name, "datatype": "INT64", "shape": [rows, length], "data": [value] * (rows * length)}
        for name, value in (("input_ids", 5), ("attention_mask", 1), ("token_type_ids", 0))
    ]
    return {"inputs": tensors}


def _with(body: dict, **changes) -> dict:
    body["inputs"][0].update(changes)
    return body


def test_hostile_tensor_fields_are_400s(served):
    cases = [
        (_with(_ids(1), shape=[2**62 + 1, 4]), "at most 8 dimensions of at most 2147483647 each"),  # wrapped to 4
        (_with(_ids(1), shape=[2**70, 1]), "at most 8 dimensions"),
        (_with(_ids(1), shape=[1] * 9), "at most 8 dimensions"),
        (_with(_ids(1), parameters={"binary_data_size": 32}), "gives both `data` and binary_data_size"),
        ({**_ids(1), "parameters": {"binary_data_output": "yes"}}, "must be true or false, found 'yes'"),
        (
            {**_ids(1), "outputs": [{"name": "logits", "parameters": {"classification": 2}}]},
            "classification extension (class_count)",
        ),
    ]
    for body, message in cases:
        status, _, got = request(served.port, "POST", "/v2/models/sequence/infer", body)
        assert status == 400 and message in got["error"], (body["inputs"][0].get("shape"), status, got)


def test_a_request_holds_at_most_max_request_rows(served):
    status, _, got = request(served.port, "POST", "/v2/models/sequence/infer", _ids(ROWS))
    assert status == 200, got
    status, _, got = request(served.port, "POST", "/v2/models/sequence/infer", _ids(ROWS + 1))
    assert (
        status == 413
        and f"holds {ROWS + 1} rows, more than the limit {ROWS} per request (--max-infer-rows)" in (got["error"])
    )
    status, _, got = request(served.port, "POST", "/v2/models/sequence/predict", {"texts": ["a fine film"] * 5})
    assert status == 413 and "--max-request-rows" in got["error"]
    status, _, got = request(served.port, "POST", "/v2/models/sequence/predict", {"texts": ["a fine film"] * 4})
    assert status == 200 and len(got["predictions"]) == ROWS


def test_a_body_that_never_arrives_is_timed_out(served):
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v2/models/sequence/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{"
        )
        answer = b""
        while b"did not arrive" not in answer and (chunk := sock.recv(65536)):
            answer += chunk
        answer = answer.decode()
    assert answer.startswith("HTTP/1.1 408") and "did not arrive within 0.5 s" in answer


def test_an_unexpected_failure_is_a_counted_500_and_decoding_runs_off_the_event_loop(served, monkeypatch):
    threads = []
    parse = serve_app.parse_infer_request

    def watched(*args):
        threads.append(threading.current_thread().name)
        return parse(*args)

    monkeypatch.setattr(serve_app, "parse_infer_request", watched)
    status, _, _ = request(served.port, "POST", "/v2/models/sequence/infer", _ids(1))
    assert status == 200 and threads and threads[0].startswith("edgekiln-codec")

    def broken(*args):
        raise ValueError("cannot reshape array")  # what numpy raised for a wrapped-around shape

    monkeypatch.setattr(serve_app, "parse_infer_request", broken)
    status, _, got = request(served.port, "POST", "/v2/models/sequence/infer", _ids(1))
    assert status == 500 and got["error"] == "internal error: ValueError: cannot reshape array"
    _, _, metrics = request(served.port, "GET", "/metrics")
    assert 'edgekiln_request_errors_total{endpoint="infer",model="sequence",status="500"} 1.0' in metrics.decode()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--max-body-mb", "nan", "expected a positive number, found 'nan'"),
        ("--max-body-mb", "inf", "expected a positive number, found 'inf'"),
        ("--max-wait-ms", "1e9", "expected milliseconds from 0 to 10000, found '1e9'"),
        ("--max-wait-ms", "nan", "expected milliseconds from 0 to 10000"),
        ("--max-request-rows", "0", "expected a positive integer"),
    ],
)
def test_serve_flags_out_of_range_are_usage_errors(artifacts, capsys, flag, value, message):
    from edgekiln.cli.main import main

    with pytest.raises(SystemExit) as exited:
        main(["serve", str(artifacts["sequence"]), "--port", "0", flag, value])
    assert exited.value.code == 2 and message in capsys.readouterr().err


def test_the_json_of_a_body_is_not_echoed_into_errors(served):
    """A body of many nested lists (decoded on a codec thread) gets one short 400."""
    body = json.dumps({"inputs": [[[]]] * 20000}).encode()
    status, _, got = request(served.port, "POST", "/v2/models/sequence/infer", body)
    assert status == 400 and len(got["error"]) < 200, got


def test_an_input_without_a_batch_axis_does_not_count_as_the_batch(tmp_path):
    """x[N, 5] with a fixed c[2, 3] beside it: one row of x is a batch of one, whatever c's first size."""
    import onnx
    from onnx import TensorProto, helper

    from edgekiln.compiler import Recipe, compile

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Relu", ["c"], ["z"])],
        "two",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 5]),
            helper.make_tensor_value_info("c", TensorProto.FLOAT, [2, 3]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3]),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "two.onnx")
    art = compile(tmp_path / "two.onnx", "host", tmp_path / "art", recipe=Recipe.from_flags(backend="onnxruntime"))
    body = {
        "inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1, 5], "data": [-1.0, 2.0, -3.0, 4.0, 5.0]},
            {"name": "c", "datatype": "FP32", "shape": [2, 3], "data": [1.0, -1.0, 0.0, 2.0, -2.0, 3.0]},
        ]
    }
    with serving(Server([ServedModel("two", load(art.path))], ServeConfig())) as running:
        status, _, got = request(running.port, "POST", "/v2/models/two/infer", body)
    assert status == 200, got
    assert {o["name"]: o["data"] for o in got["outputs"]} == {
        "y": [0.0, 2.0, 0.0, 4.0, 5.0],
        "z": [1.0, 0.0, 0.0, 2.0, 0.0, 3.0],
    }


def test_a_client_leaving_mid_body_is_not_a_server_error(served):
    import time

    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(
            b"POST /v2/models/sequence/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"texts": '
        )
    deadline = time.monotonic() + 5
    text = ""
    while 'status="499"' not in text and time.monotonic() < deadline:
        time.sleep(0.05)
        text = request(served.port, "GET", "/metrics")[2].decode()
    assert 'edgekiln_request_errors_total{endpoint="predict",model="sequence",status="499"} 1.0' in text
    assert 'endpoint="predict",model="sequence",status="500"' not in text


def test_one_large_infer_request_runs_in_chunks_with_the_same_answers(artifacts):
    import numpy as np

    from edgekiln.runtime.serve.models import CHUNK_ROWS

    session = load(artifacts["token"])
    model = ServedModel("token", session)
    rows = 2 * CHUNK_ROWS + 5
    feeds = session.encoder.encode(["john visited paris and rome"] * rows)[0]
    calls = []
    run = session.run
    session.run = lambda arrays: calls.append(len(next(iter(arrays.values())))) or run(arrays)
    (got,) = model.run_infer([feeds])
    assert calls == [CHUNK_ROWS, CHUNK_ROWS, 5]  # activations bounded by the chunk, not the request
    expected = run(feeds)
    assert set(got) == set(expected)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-5, atol=1e-6)
