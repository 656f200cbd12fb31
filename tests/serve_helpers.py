"""Helpers for the serve tests: a server on a free loopback port in a background thread, and a
plain HTTP client (the standard library's, keep-alive)."""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from edgekiln.runtime.serve.app import Server


@dataclass
class Running:
    server: Server
    uvicorn: object
    thread: threading.Thread
    port: int

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"


@contextlib.contextmanager
def serving(server: Server) -> Iterator[Running]:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(server.app, log_level="warning", timeout_graceful_shutdown=20, lifespan="on")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    running = Running(server, instance, thread, sock.getsockname()[1])
    try:
        yield running
    finally:
        instance.should_exit = True
        thread.join(30)
        sock.close()


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | dict | None = None,
    headers: dict[str, str] | None = None,
    connection: http.client.HTTPConnection | None = None,
):
    """(status, headers, parsed JSON or raw bytes) of one request."""
    conn = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    raw = response.read()
    if connection is None:
        conn.close()
    content_type = response.getheader("Content-Type", "")
    parsed = json.loads(raw) if content_type.startswith("application/json") else raw
    return response.status, dict(response.getheaders()), parsed
