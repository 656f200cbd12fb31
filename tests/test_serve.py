"""`edgekiln serve`: the Open Inference Protocol v2 through tritonclient (a client no one here wrote),
/predict and the error cases over plain HTTP, dynamic batching and a bounded load test, each answer
compared with the same artifact's Session.run / predict."""

from __future__ import annotations

import http.client
import json
import random
import threading
import time

import numpy as np
import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")
httpclient = pytest.importorskip("tritonclient.http")

from edgekiln.runtime import load  # noqa: E402
from edgekiln.runtime.serve.app import Server  # noqa: E402
from edgekiln.runtime.serve.batching import Job, ModelWorker  # noqa: E402
from edgekiln.runtime.serve.config import ServeConfig  # noqa: E402
from edgekiln.runtime.serve.models import ServedModel  # noqa: E402

from .serve_helpers import request, serving  # noqa: E402

TEXTS = [
    "i love this movie",
    "the plot was boring and the acting was terrible",
    "john visited paris",
    "a",
    "mary went to london and it was great fun",
    "not good",
    "google and apple",
]
TOL = {"rtol": 1e-4, "atol": 1e-5}
KINDS = ("sequence", "token", "encoder")


@pytest.fixture(scope="module")
def sessions(artifacts):
    return {kind: load(artifacts[kind]) for kind in KINDS}


def _server(artifacts, **config) -> Server:
    models = [ServedModel(kind, load(artifacts[kind])) for kind in KINDS]
    return Server(models, ServeConfig(**{"max_batch": 8, "max_wait_ms": 5, **config}))


@pytest.fixture(scope="module")
def served(artifacts):
    with serving(_server(artifacts, max_body_bytes=256 * 1024, max_text_chars=500)) as running:
        yield running


def _feeds(session, texts):
    return session.encoder.encode(texts)[0]


def test_tritonclient_metadata(served):
    client = httpclient.InferenceServerClient(served.url)
    assert client.is_server_live() and client.is_server_ready()
    assert "binary_tensor_data" in client.get_server_metadata()["extensions"]
    for kind in KINDS:
        assert client.is_model_ready(kind)
    meta = client.get_model_metadata("token")
    assert [(t["name"], t["datatype"], t["shape"]) for t in meta["inputs"]] == [
        ("input_ids", "INT64", [-1, -1]),
        ("attention_mask", "INT64", [-1, -1]),
        ("token_type_ids", "INT64", [-1, -1]),
    ]
    assert meta["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [-1, -1, 5]}]
    assert client.get_model_metadata("encoder")["outputs"][0]["shape"] == [-1, 32]
    assert not client.is_model_ready("nope")


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_tritonclient_infer_matches_session_run(served, sessions, binary):
    client = httpclient.InferenceServerClient(served.url)
    for kind in KINDS:
        session = sessions[kind]
        feeds = _feeds(session, TEXTS[:3])
        inputs = []
        for name, array in feeds.items():
            tensor = httpclient.InferInput(name, list(array.shape), "INT64")
            tensor.set_data_from_numpy(array, binary_data=binary)
            inputs.append(tensor)
        output = session.manifest.outputs[0].name
        result = client.infer(
            kind, inputs, outputs=[httpclient.InferRequestedOutput(output, binary_data=binary)], request_id="r1"
        )
        assert result.get_response()["id"] == "r1"
        expected = session.run(feeds)[output]
        got = result.as_numpy(output)
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, **TOL)
    # no outputs named: tritonclient asks for all outputs as binary data (binary_data_output)
    result = client.infer(
        "sequence", inputs=[_infer_input(n, a) for n, a in _feeds(sessions["sequence"], ["a"]).items()]
    )
    np.testing.assert_allclose(
        result.as_numpy("logits"), sessions["sequence"].run(_feeds(sessions["sequence"], ["a"]))["logits"], **TOL
    )


def _infer_input(name, array):
    tensor = httpclient.InferInput(name, list(array.shape), "INT64")
    tensor.set_data_from_numpy(array)
    return tensor


def test_predict_matches_session_predict(served, sessions):
    for kind in KINDS:
        status, _, body = request(served.port, "POST", f"/v2/models/{kind}/predict", {"texts": TEXTS})
        assert status == 200, body
        expected = sessions[kind].predict(TEXTS)
        got = body["predictions"]
        if kind == "sequence":
            assert [p["label"] for p in got] == [p.label for p in expected]
            np.testing.assert_allclose([p["score"] for p in got], [p.score for p in expected], **TOL)
        elif kind == "token":
            assert [[(t["word"], t["tag"]) for t in tags] for tags in got] == [
                [(t.word, t.tag) for t in tags] for tags in expected
            ]
        else:
            np.testing.assert_allclose(np.asarray(got, dtype=np.float32), expected, **TOL)


def _infer_body(feeds, **override):
    inputs = [
        {"name": n, "shape": list(a.shape), "datatype": "INT64", "data": a.reshape(-1).tolist()}
        for n, a in feeds.items()
    ]
    for name, changes in override.items():
        next(t for t in inputs if t["name"] == name).update(changes)
    return {"inputs": inputs}


def test_bad_requests_are_json_errors(served, sessions):
    feeds = _feeds(sessions["sequence"], ["i love this movie"])
    port = served.port
    cases = [
        ("POST", "/v2/models/nope/infer", _infer_body(feeds), 404, "not served here"),
        ("GET", "/v2/models/nope", None, 404, "not served here"),
        (
            "POST",
            "/v2/models/sequence/infer",
            _infer_body(feeds, input_ids={"datatype": "INT32"}),
            400,
            "datatype INT32, expected INT64",
        ),
        (
            "POST",
            "/v2/models/sequence/infer",
            _infer_body(feeds, input_ids={"datatype": "FP99"}),
            400,
            "datatype 'FP99'",
        ),
        (
            "POST",
            "/v2/models/sequence/infer",
            _infer_body(feeds, input_ids={"shape": [feeds["input_ids"].size]}),
            400,
            "expected [-1, -1]",
        ),
        ("POST", "/v2/models/sequence/infer", _infer_body(feeds, input_ids={"shape": [1, 99]}), 400, "needs 99"),
        ("POST", "/v2/models/sequence/infer", _infer_body(feeds, input_ids={"data": [[1, 2], [3]]}), 400, "ragged"),
        (
            "POST",
            "/v2/models/sequence/infer",
            _infer_body(feeds, input_ids={"data": [0.5] * feeds["input_ids"].size}),
            400,
            "not INT64",
        ),
        (
            "POST",
            "/v2/models/sequence/infer",
            _infer_body(feeds, input_ids={"data": [1] * (feeds["input_ids"].size - 1) + [True]}),
            400,
            "holds booleans",
        ),
        ("POST", "/v2/models/sequence/infer", _infer_body({"input_ids": feeds["input_ids"]}), 400, "missing"),
        (
            "POST",
            "/v2/models/sequence/infer",
            _infer_body(feeds, input_ids={"data": [10**6] * feeds["input_ids"].size}),
            400,
            "outside the artifact's tokenizer vocabulary",
        ),
        (
            "POST",
            "/v2/models/sequence/infer",
            {"inputs": _infer_body(feeds)["inputs"], "outputs": [{"name": "x"}]},
            400,
            "no output 'x'",
        ),
        ("POST", "/v2/models/sequence/infer", b"{not json", 400, "not valid JSON"),
        ("POST", "/v2/models/sequence/infer", {"inputs": []}, 400, "no `inputs`"),
        ("POST", "/v2/models/sequence/predict", {"texts": "x" * 501}, 422, "more than the limit 500"),
        ("POST", "/v2/models/sequence/predict", {"texts": [1]}, 400, "not a string"),
        ("POST", "/v2/models/sequence/predict", {"words": []}, 400, "texts"),
        (
            "POST",
            "/v2/models/sequence/predict",
            json.dumps({"texts": ["x " * 1000] * 150}).encode(),
            413,
            "limit 262144",
        ),
        ("GET", "/v2/models/sequence/infer", None, 405, "not allowed"),
        ("GET", "/v3/nothing", None, 404, "no such endpoint"),
    ]
    for method, path, body, status, message in cases:
        got_status, _, got = request(port, method, path, body)
        assert got_status == status and message in got["error"], (method, path, got_status, got)
    # a long binary body whose header length lies
    status, _, got = request(
        port, "POST", "/v2/models/sequence/infer", b'{"inputs": []}', {"Inference-Header-Content-Length": "999"}
    )
    assert status == 400 and "Inference-Header-Content-Length" in got["error"]


def test_padded_merge_equals_single_calls(sessions):
    """Requests of different lengths merged into one call give each its own single-call answer."""
    for kind in ("sequence", "token"):
        model = ServedModel(kind, sessions[kind])
        requests = [_feeds(sessions[kind], [text]) for text in TEXTS[:4]]
        assert len({r["input_ids"].shape[1] for r in requests}) > 1
        assert len({model.infer_key(r) for r in requests}) == 1
        merged = model.run_infer(requests)
        for feeds, got in zip(requests, merged):
            expected = sessions[kind].run(feeds)
            assert got["logits"].shape == expected["logits"].shape
            np.testing.assert_allclose(got["logits"], expected["logits"], **TOL)


def test_worker_merges_queued_jobs_and_isolates_a_failing_one():
    calls, answers = [], {}

    def runner(payloads):
        calls.append(list(payloads))
        if "bad" in payloads:
            raise ValueError("bad payload")
        return [p.upper() for p in payloads]

    worker = ModelWorker("m", max_batch=3, max_wait_ms=0, max_queue=10)
    for payload in ["a", "b", "bad", "c", "d"]:  # queued before the thread starts: merged as they fit
        worker.submit(Job(runner, payload, 1, "k", lambda r, e, p=payload: answers.__setitem__(p, (r, e))))
    worker.start()
    worker.stop(10)
    assert calls[0] == ["a", "b", "bad"] and calls[1:4] == [["a"], ["b"], ["bad"]] and calls[4] == ["c", "d"]
    assert answers["a"] == ("A", None) and answers["d"] == ("D", None)
    assert isinstance(answers["bad"][1], ValueError) and worker.depth == 0


def test_jobs_with_array_payloads_merge_past_waiting_jobs_of_another_shape():
    """A job taken out of the waiting line behind another is found by identity: comparing two jobs'
    arrays (shapes (2, 4) and (3, 4)) raised inside the worker thread, which died and hung the model."""
    worker = ModelWorker("m", max_batch=8, max_wait_ms=0, max_queue=10)

    def runner(payloads):  # one runner for every job, as a served model's bound method is
        return [p.sum() for p in payloads]

    def done(result, error):
        pass

    jobs = [Job(runner, np.ones((rows, 4)), rows, key, done, 0.0) for rows, key in ((1, "b"), (2, "a"), (3, "b"))]
    worker._waiting.extend(jobs[1:])  # set aside earlier: "other" (another key) ahead of "merged"
    batch = [jobs[0]]
    assert worker._gather(batch) is False
    assert batch == [jobs[0], jobs[2]] and list(worker._waiting) == [jobs[1]]


def test_a_failure_while_gathering_fails_the_jobs_in_hand_and_the_worker_goes_on(monkeypatch):
    done = {}
    worker = ModelWorker("m", max_batch=4, max_wait_ms=0, max_queue=10)
    broken = {"once": True}
    gather = worker._gather

    def flaky(batch):
        if broken.pop("once", False):
            raise RuntimeError("a bug")
        return gather(batch)

    monkeypatch.setattr(worker, "_gather", flaky)
    for name in ("a", "b"):
        worker.submit(
            Job(
                lambda payloads: [p.upper() for p in payloads],
                name,
                1,
                name,
                lambda r, e, k=name: done.__setitem__(k, (r, e)),
            )
        )
    worker.start()
    worker.stop(10)
    assert isinstance(done["a"][1], RuntimeError) and done["b"] == ("B", None) and worker.depth == 0


class _Blocking:
    """A backend whose run waits until released: holds the model's worker busy on purpose."""

    def __init__(self, backend):
        self.backend, self.entered, self.release = backend, threading.Event(), threading.Event()
        self.name = backend.name

    def run(self, feeds):
        self.entered.set()
        assert self.release.wait(30)
        return self.backend.run(feeds)


def test_queue_full_is_503_and_shutdown_drains(artifacts, sessions):
    session = load(artifacts["sequence"])
    blocking = session.backend = _Blocking(session.backend)
    server = Server([ServedModel("sequence", session)], ServeConfig(max_batch=1, max_queue=1))
    body = {"texts": ["i love this movie"]}
    first: dict = {}
    with serving(server) as running:
        thread = threading.Thread(
            target=lambda: first.update(answer=request(running.port, "POST", "/v2/models/sequence/predict", body))
        )
        thread.start()
        assert blocking.entered.wait(30)
        status, headers, got = request(running.port, "POST", "/v2/models/sequence/predict", body)
        assert status == 503 and headers.get("retry-after", headers.get("Retry-After")) == "1", got
        assert "--max-queue" in got["error"]
        running.uvicorn.should_exit = True  # shut down while the first request is in flight
        time.sleep(0.3)
        blocking.release.set()
        thread.join(30)
        running.thread.join(30)
        assert not running.thread.is_alive()
    status, _, got = first["answer"]
    assert status == 200 and got["predictions"][0]["label"] == sessions["sequence"].predict(body["texts"])[0].label


def _expected_answers(sessions):
    """(path, body, check) per case, the answer computed by a single direct call."""
    cases = []
    for text in TEXTS:
        for kind in KINDS:
            feeds = _feeds(sessions[kind], [text])
            output = sessions[kind].manifest.outputs[0].name
            cases.append((f"/v2/models/{kind}/infer", _infer_body(feeds), ("infer", sessions[kind].run(feeds)[output])))
        expected = sessions["sequence"].predict([text])[0]
        cases.append(("/v2/models/sequence/predict", {"texts": [text]}, ("predict", expected)))
    return cases


def _correct(answer, check) -> bool:
    kind, expected = check
    if kind == "predict":
        got = answer["predictions"][0]
        return got["label"] == expected.label and abs(got["score"] - expected.score) < 1e-4
    data = np.asarray(answer["outputs"][0]["data"], dtype=np.float32).reshape(answer["outputs"][0]["shape"])
    return data.shape == expected.shape and np.allclose(data, expected, **TOL)


@pytest.mark.parametrize("max_batch", [8, 1], ids=["batching", "no-batching"])
def test_load_32_clients(artifacts, sessions, max_batch):
    """32 concurrent keep-alive clients for a few seconds: no errors, every answer equal to the single call."""
    cases = _expected_answers(sessions)
    tallies = {"ok": 0, "errors": 0, "wrong": 0}
    lock = threading.Lock()
    with serving(_server(artifacts, max_batch=max_batch, max_wait_ms=5)) as running:
        stop = time.monotonic() + 4

        def client(seed):
            rng = random.Random(seed)
            conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=60)
            while time.monotonic() < stop:
                path, body, check = rng.choice(cases)
                try:
                    status, _, answer = request(running.port, "POST", path, body, connection=conn)
                    key = (
                        "ok" if status == 200 and _correct(answer, check) else ("errors" if status != 200 else "wrong")
                    )
                except (OSError, http.client.HTTPException):
                    key = "errors"
                    conn = http.client.HTTPConnection("127.0.0.1", running.port, timeout=60)
                with lock:
                    tallies[key] += 1
            conn.close()

        threads = [threading.Thread(target=client, args=(seed,)) for seed in range(32)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        _, _, metrics = request(running.port, "GET", "/metrics")
    assert tallies["errors"] == 0 and tallies["wrong"] == 0 and tallies["ok"] > 32, tallies
    rows = _metric(metrics, 'edgekiln_batch_rows_sum{model="sequence"}')
    calls = _metric(metrics, 'edgekiln_batch_rows_count{model="sequence"}')
    if max_batch == 1:
        assert rows == calls
    else:
        assert rows > calls  # some requests were merged
    assert _metric(metrics, 'edgekiln_requests_total{endpoint="infer",model="sequence"}') > 0


def _metric(text: bytes, name: str) -> float:
    line = next(line for line in text.decode().splitlines() if line.startswith(name + " "))
    return float(line.split()[-1])


def test_cli_refuses_bad_artifacts_in_one_line(artifacts, tmp_path, capsys):
    from edgekiln.cli.main import main

    assert main(["serve", str(tmp_path), "--port", "0"]) == 2
    assert "not an edgekiln artifact" in capsys.readouterr().err
    assert main(["serve", str(artifacts["sequence"]), str(artifacts["sequence"]), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert "two artifacts would both be served as model 'sequence'" in err and "NAME1=ART1" in err
    assert main(["serve", f"bad name={artifacts['sequence']}", "--port", "0"]) == 2  # not a NAME=: a path
    assert "does not exist" in capsys.readouterr().err
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(["serve", str(artifacts["sequence"]), "--port", port]) == 2
    err = capsys.readouterr().err.strip()
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err and len(err.splitlines()) == 1


def test_openapi_document_and_page(served):
    status, _, spec = request(served.port, "GET", "/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.")
    assert {"/v2/models/{model_name}/infer", "/v2/models/{model_name}/predict", "/v2/health/ready"} <= set(
        spec["paths"]
    )
    infer = spec["paths"]["/v2/models/{model_name}/infer"]["post"]
    assert set(infer["parameters"][0]["schema"]["enum"]) == set(KINDS)
    assert "413" in infer["responses"] and "503" in infer["responses"]
    status, headers, page = request(served.port, "GET", "/docs")
    assert (
        status == 200 and headers["content-type"].startswith("text/html") and b"/v2/models/{model_name}/infer" in page
    )


def test_a_raw_image_model_takes_non_square_inputs_and_json_stays_json(tmp_path):
    """Two dynamic axes (H, W) are two sizes, not one sequence; NaN and Infinity neither enter nor
    leave as JSON (strict parsers refuse them); a value past float32 is refused, not made infinite."""
    from .test_any_onnx import _compile, unet

    shapes = "x:[1..4]x3x[32..96:32]x[32..96:32]"
    artifact = _compile(unet(tmp_path / "unet.onnx"), tmp_path / "art", "onnxruntime", shapes).path
    session = load(artifact)
    served = ServedModel("unet", session)
    assert served.max_rows == 4  # the batch range bounds a merged call
    rng = np.random.default_rng(1)
    for shape in ((1, 3, 64, 32), (1, 3, 32, 96)):  # H > W and H < W: stacked as they are, not padded to one length
        requests = [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(2)]
        assert served.infer_key(requests[0]) == served.infer_key(requests[1])
        for got, alone in zip(served.run_infer(requests), requests):
            np.testing.assert_allclose(got["y"], session.run(alone)["y"], **TOL)
    with serving(Server([served], ServeConfig(max_wait_ms=5))) as running:
        client = httpclient.InferenceServerClient(running.url)
        x = np.random.default_rng(0).standard_normal((2, 3, 32, 64)).astype(np.float32)
        given = httpclient.InferInput("x", list(x.shape), "FP32")
        given.set_data_from_numpy(x, binary_data=True)
        answer = client.infer("unet", [given]).as_numpy("y")
        np.testing.assert_allclose(answer, session.run({"x": x})["y"], **TOL)

        def post(data: bytes):
            return request(running.port, "POST", "/v2/models/unet/infer", data)[::2]

        body = {"inputs": [{"name": "x", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [0.5] * 3072}]}
        status, _ = post(json.dumps(body).encode())
        assert status == 200
        for constant in ("NaN", "Infinity"):
            status, answer = post(json.dumps(body).encode().replace(b"0.5", constant.encode(), 1))
            assert status == 400 and constant in answer["error"], answer
        status, answer = post(json.dumps(body).encode().replace(b"0.5", b"1e300", 1))
        assert status == 400 and "beyond its range" in answer["error"], answer
        nan = np.full((1, 3, 32, 32), np.nan, np.float32)
        given = httpclient.InferInput("x", list(nan.shape), "FP32")
        given.set_data_from_numpy(nan, binary_data=True)
        with pytest.raises(Exception, match="NaN or infinite values") as caught:
            client.infer("unet", [given], outputs=[httpclient.InferRequestedOutput("y", binary_data=False)])
        assert "422" in str(caught.value) or "NaN" in str(caught.value)
        binary = client.infer("unet", [given], outputs=[httpclient.InferRequestedOutput("y", binary_data=True)])
        assert np.isnan(binary.as_numpy("y")).all()
