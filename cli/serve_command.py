"""`edgekiln serve`: artifacts behind the Open Inference Protocol v2, under uvicorn."""

from __future__ import annotations

import socket

from edgekiln.runtime.errors import InputError
from edgekiln.runtime.serve.config import MAX_WAIT_MS

from .parsing import bounded_float, positive_float, positive_int
from .signing_commands import add_trusted_key_option


def register(commands) -> None:
    serve = commands.add_parser(
        "serve",
        help="serve artifacts over the Open Inference Protocol v2 (KServe / Triton REST)",
        description="Serve artifacts over HTTP: /v2/health/{live,ready}, /v2/models/NAME (metadata), "
        "/v2/models/NAME/infer (JSON and binary tensors), /v2/models/NAME/predict (texts, or base64 images), /metrics.",
    )
    serve.add_argument(
        "artifacts", nargs="+", metavar="ART", help="artifact folders, each served under its source's name, or NAME=ART"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000; 0: any free port)")
    serve.add_argument(
        "--max-batch",
        type=positive_int,
        default=8,
        help="rows merged into one model call by dynamic batching (default 8; 1 turns it off)",
    )
    serve.add_argument(
        "--max-wait-ms",
        type=bounded_float(0, MAX_WAIT_MS, "milliseconds"),
        default=2.0,
        help="how long a request waits for others to merge with (default 2; 0: merge only requests already queued)",
    )
    serve.add_argument(
        "--max-queue",
        type=positive_int,
        default=256,
        help="requests queued per model before answering 503 (default 256)",
    )
    serve.add_argument("--max-body-mb", type=positive_float, default=8.0, help="request body limit (default 8)")
    serve.add_argument(
        "--max-request-rows",
        type=positive_int,
        default=512,
        help="texts or images one /predict request may hold (default 512; more: 413)",
    )
    serve.add_argument(
        "--max-infer-rows",
        type=positive_int,
        help="batch rows one /infer request may hold (default: only --max-body-mb bounds it; more: 413)",
    )
    serve.add_argument(
        "--body-timeout", type=positive_float, default=30.0, help="seconds a client has to send its body (default 30)"
    )
    serve.add_argument(
        "--max-connections", type=positive_int, default=1024, help="open connections before 503 (default 1024)"
    )
    serve.add_argument(
        "--max-text-chars", type=positive_int, default=10_000, help="characters per text for /predict (default 10000)"
    )
    serve.add_argument("--threads", type=positive_int, help="inference threads per model (default: the target's)")
    serve.add_argument(
        "--no-warm-up",
        action="store_true",
        help="start listening without a warm-up call per model (and per static sequence length of OpenVINO/TVM "
        "artifacts): the first requests then pay for it",
    )
    add_trusted_key_option(serve)
    serve.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(handler=cmd_serve)


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from edgekiln.runtime.serve.app import Server
        from edgekiln.runtime.serve.config import ServeConfig
        from edgekiln.runtime.serve.models import load_models
    except ImportError as exc:
        raise InputError(
            f"`edgekiln serve` needs {exc.name}, which is not installed", hint="pip install 'edgekiln[serve]'"
        ) from None
    config = ServeConfig(
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_body_bytes=max(1024, int(args.max_body_mb * 1024 * 1024)),
        max_request_rows=args.max_request_rows,
        max_infer_rows=args.max_infer_rows,
        body_timeout_seconds=args.body_timeout,
        max_connections=args.max_connections,
        max_text_chars=args.max_text_chars,
        threads=args.threads,
    )
    listening = bind(config.host, config.port)  # before the models load: a taken port fails at once
    models = load_models(
        args.artifacts, threads=config.threads, warm_up=not args.no_warm_up, trusted_keys=args.trusted_key
    )
    server = Server(models, config)
    for name, model in server.models.items():
        warm = f"; {model.warm.describe()}" if model.warm else ""
        print(
            f"serving {model.session.folder} as model {name} ({model.session.task.value}, "
            f"{model.session.manifest.backend}{warm})",
            flush=True,
        )
    host, port = listening.getsockname()[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    uvicorn_config = uvicorn.Config(
        server.app,
        log_level=args.log_level,
        timeout_graceful_shutdown=config.graceful_seconds,
        limit_concurrency=config.max_connections,
    )
    uvicorn.Server(uvicorn_config).run(sockets=[listening])
    return 0


def bind(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or one error naming the address (in use, not this machine's, unknown)."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise InputError(
            f"cannot listen on {host}:{port}: {exc.strerror}", hint="pass --host an address of this machine"
        ) from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="choose another --port (0: any free one), or stop the process that holds it",
        ) from None
    return sock
