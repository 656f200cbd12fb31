"""The ASGI app: Open Inference Protocol v2 routes, `/predict`, `/metrics`, and JSON errors only.

Handlers run on the event loop and never call a model, nor decode a body there: a few codec threads
decode and check a request (and encode its answer), the model's worker thread (batching.py) runs it.
Every refusal is a ServeError, sent as `{"error": "..."}` with its status; anything unexpected is a 500
with one line, no traceback.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..errors import EdgekilnError, InputError
from ..images.decode import check_header
from ..manifest import Task
from ..tasks.image_classification import DEFAULT_TOP
from .batching import Job, ModelWorker
from .config import ServeConfig
from .errors import ServeError
from .metrics import Metrics
from .models import ServedModel
from .openapi import docs_page, openapi
from .tensors import HEADER_LENGTH, encode_infer_response, json_body, parse_infer_request

log = logging.getLogger("edgekiln.serve")
CLIENT_CLOSED = 499  # nginx's status for a client that closed the connection before the answer
CODEC_THREADS = 4  # requests decoded or encoded at once (see Server.off_loop)


class Server:
    """The served models, their workers and metrics; `app` is what uvicorn runs."""

    def __init__(self, models: list[ServedModel], config: ServeConfig) -> None:
        names = [model.name for model in models]
        duplicate = next((name for name in names if names.count(name) > 1), None)
        if duplicate:
            raise InputError(
                f"two artifacts would both be served as model {duplicate!r}",
                hint="name them: edgekiln serve NAME1=ART1 NAME2=ART2",
            )
        self.config = config
        self.models = {model.name: model for model in models}
        self.metrics = Metrics(config.max_batch)
        self.workers = {}
        for model in models:
            worker = ModelWorker(
                model.name,
                max_batch=min(config.max_batch, model.max_rows or config.max_batch),
                max_wait_ms=config.max_wait_ms,
                max_queue=config.max_queue,
                on_batch=self.metrics.batch_observer(model.name),
            )
            self.metrics.watch_queue(model.name, lambda worker=worker: worker.depth)
            self.workers[model.name] = worker
        self.codec = ThreadPoolExecutor(max_workers=CODEC_THREADS, thread_name_prefix="edgekiln-codec")
        self.app = Starlette(
            routes=_routes(self),
            lifespan=self._lifespan,
            exception_handlers={
                ServeError: _serve_error,
                HTTPException: _http_error,
                ClientDisconnect: _client_left,
                Exception: _internal_error,
            },
        )

    @contextlib.asynccontextmanager
    async def _lifespan(self, app):
        for worker in self.workers.values():
            worker.start()
        yield
        # uvicorn has stopped accepting and waited for the requests in flight: end the workers
        for worker in self.workers.values():
            worker.stop(self.config.graceful_seconds)
        self.codec.shutdown(wait=False, cancel_futures=True)

    def model(self, request: Request) -> ServedModel:
        name = request.path_params["name"]
        version = request.path_params.get("version")
        model = self.models.get(name)
        if model is None:
            raise ServeError(404, f"model {name!r} is not served here; served: {sorted(self.models)}")
        if version is not None and version != "1":
            raise ServeError(404, f"model {name} has only version 1, not {version!r}")
        return model

    async def body(self, request: Request) -> bytes:
        """The request body, refused with 413 once it passes --max-body-mb."""
        limit = self.config.max_body_bytes
        encoding = request.headers.get("content-encoding", "identity").lower()
        if encoding != "identity":
            raise ServeError(415, f"Content-Encoding {encoding} is not supported; send the body uncompressed")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ServeError(413, f"the body has {declared} bytes, more than the limit {limit} (--max-body-mb)")
        timeout = self.config.body_timeout_seconds
        try:
            return await asyncio.wait_for(_read_body(request, limit), timeout)
        except asyncio.TimeoutError:
            raise ServeError(408, f"the body did not arrive within {timeout:g} s; send it whole, at once") from None

    async def off_loop(self, function, *args) -> Any:
        """Decoding, checking and encoding a request's tensors or texts, on the codec threads: the
        event loop stays free for health checks and other requests, and the few threads bound the
        memory that large bodies being decoded at once can take."""
        return await asyncio.get_running_loop().run_in_executor(self.codec, function, *args)

    def check_rows(self, rows: int, *, tensors: bool = False) -> None:
        limit, flag = (
            (self.config.max_infer_rows, "--max-infer-rows")
            if tensors
            else (self.config.max_request_rows, "--max-request-rows")
        )
        if limit is not None and rows > limit:
            raise ServeError(
                413,
                f"the request holds {rows} rows, more than the limit {limit} per request ({flag}); "
                "split it into smaller requests",
            )

    async def run(self, model: ServedModel, runner, payload: Any, rows: int, key) -> Any:
        """Hand a request to the model's worker and await its share of the merged call."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future = loop.create_future()

        def done(result: Any, error: BaseException | None) -> None:
            loop.call_soon_threadsafe(_settle, future, result, error)

        self.workers[model.name].submit(Job(runner, payload, rows, key, done))
        try:
            return await future
        except EdgekilnError as exc:
            raise ServeError(400, exc.message if exc.hint is None else f"{exc.message} ({exc.hint})") from None
        except ServeError:
            raise
        except Exception as exc:  # noqa: BLE001 - a backend failure: one line, logged with its traceback
            log.exception("model %s failed", model.name)
            raise ServeError(500, f"model {model.name} failed: {type(exc).__name__}: {_first_line(exc)}") from None

    async def measured(self, request: Request, endpoint: str, handler) -> Response:
        """Count, time and label a model endpoint's request (errors by status)."""
        name = request.path_params["name"]
        label = name if name in self.models else "(unknown)"
        self.metrics.requests.labels(label, endpoint).inc()
        started = time.perf_counter()
        try:
            return await handler(self.model(request))
        except ServeError as exc:
            self.metrics.errors.labels(label, endpoint, str(exc.status)).inc()
            raise
        except ClientDisconnect:  # the client left mid-body: nobody to answer, no server fault
            self.metrics.errors.labels(label, endpoint, str(CLIENT_CLOSED)).inc()
            raise
        except Exception:  # answered by _internal_error: counted as the 500 it becomes
            self.metrics.errors.labels(label, endpoint, "500").inc()
            raise
        finally:
            self.metrics.latency.labels(label, endpoint).observe(time.perf_counter() - started)


def _routes(server: Server) -> list[Route]:
    async def live(request):
        return JSONResponse({"live": True})

    async def ready(request):
        return JSONResponse({"ready": True})

    async def server_metadata(request):
        return JSONResponse({"name": "edgekiln", "version": _version(), "extensions": ["binary_tensor_data"]})

    async def model_metadata(request):
        return JSONResponse(server.model(request).metadata())

    async def model_ready(request):
        return JSONResponse({"name": server.model(request).name, "ready": True})

    async def infer(request):
        def decode(model: ServedModel, body: bytes, header_length: str | None):
            parsed = parse_infer_request(body, header_length)
            rows = model.check_inputs(parsed.inputs)
            server.check_rows(rows, tensors=True)
            requested = None if parsed.outputs is None else [name for name, _ in parsed.outputs]
            names = model.output_names(requested)
            binary = dict(parsed.outputs) if parsed.outputs is not None else {n: parsed.binary_outputs for n in names}
            return parsed, rows, names, binary

        async def handle(model: ServedModel) -> Response:
            body = await server.body(request)
            parsed, rows, names, binary = await server.off_loop(decode, model, body, request.headers.get(HEADER_LENGTH))
            outputs = await server.run(model, model.run_infer, parsed.inputs, rows, model.infer_key(parsed.inputs))
            body, header = await server.off_loop(
                encode_infer_response, model.name, parsed.id, {n: outputs[n] for n in names}, binary
            )
            if header is None:
                return Response(body, media_type="application/json")
            return Response(
                body, media_type="application/octet-stream", headers={"Inference-Header-Content-Length": str(header)}
            )

        return await server.measured(request, "infer", handle)

    async def predict(request):
        def decode(model: ServedModel, body: bytes) -> list:
            payload = json_body(body)
            if model.session.encoder is None:
                raise ServeError(
                    400,
                    f"model {model.name} ({model.session.task.value}) takes tensors, not texts; "
                    f"use POST /v2/models/{model.name}/infer",
                )
            if model.session.task is Task.IMAGE_CLASSIFICATION:
                images = _images(payload, model.name, server.check_rows)
                _known_keys(payload, {"images", "top"})
                return images, _top(payload.get("top", DEFAULT_TOP))
            texts = _texts(payload, server.config.max_text_chars, server.check_rows)
            _known_keys(payload, {"texts"})
            return texts, None

        def encode(model: ServedModel, answers: Any) -> Response:
            try:
                return JSONResponse(
                    {"model_name": model.name, "task": model.session.task.value, "predictions": _answers_json(answers)}
                )
            except ValueError:  # starlette refuses NaN and infinity, as JSON has no such numbers
                raise ServeError(
                    422, "the model's answers hold NaN or infinite values, which JSON cannot carry"
                ) from None

        async def handle(model: ServedModel) -> Response:
            items, top = await server.off_loop(decode, model, await server.body(request))
            answers = await server.run(model, model.run_predict, (items, top), len(items), ("predict", top))
            return await server.off_loop(encode, model, answers)

        return await server.measured(request, "predict", handle)

    async def metrics(request):
        return Response(server.metrics.render(), media_type=server.metrics.content_type)

    spec = openapi(sorted(server.models), _version())

    async def openapi_json(request):
        return JSONResponse(spec)

    async def docs(request):
        return HTMLResponse(docs_page(spec))

    model = "/v2/models/{name}"
    version = "/v2/models/{name}/versions/{version}"
    return [
        Route("/v2/health/live", live),
        Route("/v2/health/ready", ready),
        Route("/v2", server_metadata),
        Route(model, model_metadata),
        Route(version, model_metadata),
        Route(f"{model}/ready", model_ready),
        Route(f"{version}/ready", model_ready),
        Route(f"{model}/infer", infer, methods=["POST"]),
        Route(f"{version}/infer", infer, methods=["POST"]),
        Route(f"{model}/predict", predict, methods=["POST"]),
        Route("/metrics", metrics),
        Route("/openapi.json", openapi_json),
        Route("/docs", docs),
    ]


async def _read_body(request: Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ServeError(413, f"the body is larger than the limit {limit} bytes (--max-body-mb)")
        chunks.append(chunk)
    return b"".join(chunks)


def _texts(payload: dict[str, Any], max_chars: int, check_rows) -> list[str]:
    texts = payload.get("texts")
    if isinstance(texts, str):
        texts = [texts]
    if not isinstance(texts, list) or not texts:
        raise ServeError(400, 'the body must be {"texts": ["...", ...]} with at least one text')
    check_rows(len(texts))
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise ServeError(400, f"texts[{index}] is a {type(text).__name__}, not a string")
        if len(text) > max_chars:
            raise ServeError(
                422, f"texts[{index}] has {len(text)} characters, more than the limit {max_chars} (--max-text-chars)"
            )
    return texts


def _images(payload: dict[str, Any], model: str, check_rows) -> list[bytes]:
    """The encoded image files of an image model's /predict body, base64 in JSON. A string is never
    taken as a path: a client names no file on the server."""
    images = payload.get("images")
    if not isinstance(images, list) or not images:
        found = "texts (which are not read as file paths here)" if "texts" in payload else f"keys {sorted(payload)}"
        raise ServeError(
            400,
            f'model {model} classifies images: the body must be {{"images": ["<base64 of an image file>", ...]}} '
            f"with at least one image, found {found}",
        )
    check_rows(len(images))
    decoded = []
    for index, image in enumerate(images):
        if not isinstance(image, str) or not image:
            raise ServeError(400, f"images[{index}] must be a non-empty base64 string, found {type(image).__name__}")
        try:
            decoded.append(base64.b64decode(image, validate=True))
        except (binascii.Error, ValueError) as exc:
            raise ServeError(400, f"images[{index}] is not valid base64 ({exc})") from None
        try:
            check_header(decoded[-1])  # not an image, too small or a bomb: named here, before any decoding
        except InputError as exc:
            raise ServeError(400, f"images[{index}]: {exc.message}") from None
    return decoded


def _known_keys(payload: dict[str, Any], known: set[str]) -> None:
    unknown = sorted(set(payload) - known)
    if unknown:
        raise ServeError(400, f"the body has keys {unknown} this model does not take; it takes {sorted(known)}")


def _top(top: Any) -> int:
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ServeError(400, f"`top` must be a positive integer, found {top!r}")
    return top


def _answers_json(answers: Any) -> list[Any]:
    """Classifications, per-word tags or embedding rows, as JSON values."""
    if isinstance(answers, np.ndarray):
        return answers.tolist()
    return [[tag.to_dict() for tag in item] if isinstance(item, list) else item.to_dict() for item in answers]


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.done():  # the client went away and the handler was cancelled
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[0] if lines else "(no message)"
    return text if len(text) <= 300 else text[:297] + "..."


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgekiln")
    except PackageNotFoundError:
        return "unknown"


async def _serve_error(request: Request, exc: ServeError) -> Response:
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: HTTPException) -> Response:
    message = {
        404: f"no such endpoint: {request.method} {request.url.path}",
        405: f"{request.method} is not allowed on {request.url.path}",
    }.get(exc.status_code, str(exc.detail))
    return JSONResponse({"error": message}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _client_left(request: Request, exc: ClientDisconnect) -> Response:
    return Response(status_code=CLIENT_CLOSED)  # never sent: the connection is gone


async def _internal_error(request: Request, exc: Exception) -> Response:
    log.error("internal error on %s %s: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
    return JSONResponse({"error": f"internal error: {type(exc).__name__}: {_first_line(exc)}"}, status_code=500)
