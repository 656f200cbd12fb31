"""Tuning on a board over TVM's RPC: the `--tune-remote` address, a reachability check, and
MetaSchedule's RPCRunner with the candidates exported for the board.

Two forms of address: `HOST:PORT` is a board running TVM's RPC server directly
(`python -m tvm.exec.rpc_server --host 0.0.0.0 --port 9090`); `tracker://HOST:PORT/KEY` is TVM's
tracker, which hands out a server registered under KEY (`rpc_server --tracker HOST:PORT --key KEY`).
TVM 0.27's RPCRunner only asks a tracker for its sessions; a direct server is reached through its
`f_create_session` hook. Candidates are linked here into a shared library (with the cross compiler
when the board is another architecture), so the board needs no compiler, only TVM's runtime.
This module stays light because the build and runner workers import it.
"""

from __future__ import annotations

import re
import socket
import threading
from functools import partial
from typing import Literal

from pydantic import BaseModel, ConfigDict

from ..errors import CompileError

CONNECT_SECONDS = 5.0  # to open the socket and finish TVM's handshake
SESSION_SECONDS = 60  # one candidate's upload, load and measurement on the board
FORMS = "HOST:PORT (a TVM RPC server) or tracker://HOST:PORT/KEY (a TVM RPC tracker)"
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(?P<port>[0-9]{1,5})$")


class RemoteAddress(BaseModel):
    """Where MetaSchedule measures candidates: a TVM RPC server, or a tracker and a device key."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["server", "tracker"]
    host: str
    port: int
    key: str | None = None

    def __str__(self) -> str:
        where = f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"
        return f"tracker://{where}/{self.key}" if self.kind == "tracker" else where


def parse_remote(text: str) -> RemoteAddress:
    """The address `--tune-remote` names, or one CompileError saying the forms it takes."""
    value = text.strip() if isinstance(text, str) else ""
    kind, rest, key = "server", value, None
    if value.startswith("tracker://"):
        kind, rest = "tracker", value[len("tracker://") :]
        rest, _, key = rest.partition("/")
    match = _HOST_PORT.match(rest)
    port = int(match["port"]) if match else 0
    if not match or not 0 < port < 65536 or (kind == "tracker" and not re.fullmatch(r"[A-Za-z0-9._-]+", key or "")):
        raise CompileError(f"--tune-remote {text!r} is not an address: give {FORMS}", hint="e.g. 192.168.1.20:9090")
    return RemoteAddress(kind=kind, host=match["host"].strip("[]"), port=port, key=key)


def check_remote(address: RemoteAddress, timeout: float = CONNECT_SECONDS) -> None:
    """Open one session (for a tracker: ask it for the key's server) within `timeout` seconds, and
    check the server can fill measurement buffers; one CompileError naming the address otherwise."""
    try:
        socket.create_connection((address.host, address.port), timeout=timeout).close()
    except OSError as exc:
        what = "TVM RPC tracker" if address.kind == "tracker" else "TVM RPC server"
        raise CompileError(
            f"cannot reach the {what} at {address.host}:{address.port} ({exc.strerror or exc})",
            hint=_start_hint(address),
        ) from None
    result: list = []
    thread = threading.Thread(target=_probe, args=(address, result), daemon=True)
    thread.start()
    thread.join(timeout + 1)
    if not result:
        what = (
            f"the tracker at {address.host}:{address.port} gave no server for key {address.key!r}"
            if address.kind == "tracker"
            else f"{address} accepted the connection but gave no TVM RPC session"
        )
        raise CompileError(f"{what} within {timeout:.0f} s", hint=_start_hint(address))
    if isinstance(result[0], Exception):
        reason = str(result[0]).strip().splitlines()
        reason = reason[-1] if reason else type(result[0]).__name__
        if "random_fill_for_measure" in reason:
            raise CompileError(
                f"the TVM RPC server at {address} cannot measure candidates: {reason}",
                hint="run rpc_server with TVM's full library on the board (not TVM_USE_RUNTIME_LIB=1)",
            )
        raise CompileError(f"{address} did not give a TVM RPC session: {reason}", hint=_start_hint(address))


def _probe(address: RemoteAddress, result: list) -> None:
    try:
        session = create_session(address, SESSION_SECONDS, None)
        session.get_function("tvm.contrib.random.random_fill_for_measure")
        result.append(True)
    except Exception as exc:  # TVM raises its own error types for refused keys and missing functions
        result.append(exc)


def _start_hint(address: RemoteAddress) -> str:
    if address.kind == "tracker":
        return (
            f"start the tracker (python -m tvm.exec.rpc_tracker --port {address.port}) and, on the board, "
            f"python -m tvm.exec.rpc_server --tracker {address.host}:{address.port} --key {address.key}"
        )
    return f"on the board, run: python -m tvm.exec.rpc_server --host 0.0.0.0 --port {address.port}"


def create_session(address: RemoteAddress, timeout: int, _rpc_config):
    """An RPC session with the board (RPCRunner's `f_create_session`, bound to the address)."""
    from tvm import rpc

    if address.kind == "server":
        return rpc.connect(address.host, address.port, session_timeout=timeout)
    tracker = rpc.connect_tracker(address.host, address.port)
    return tracker.request(address.key, priority=1, session_timeout=timeout)


def export_candidate(arch: str, mod) -> str:
    """A candidate linked into a shared library for `arch` (LocalBuilder's `f_export`)."""
    import tempfile
    from pathlib import Path

    from .build import export

    path = Path(tempfile.mkdtemp(prefix="edgekiln-candidate-")) / "candidate.so"
    export(mod, path, arch)
    return str(path)


def rpc_runner(address: RemoteAddress):
    """MetaSchedule's RPCRunner measuring on the board at `address`."""
    from tvm.s_tir import meta_schedule as ms

    config = ms.runner.RPCConfig(
        tracker_host=address.host,
        tracker_port=address.port,
        tracker_key=address.key or "direct",  # the runner checks a key is set; a direct server ignores it
        session_timeout_sec=SESSION_SECONDS,
    )
    return ms.runner.RPCRunner(
        rpc_config=config,
        evaluator_config=ms.runner.EvaluatorConfig(number=3, repeat=1, min_repeat_ms=100),
        f_create_session=partial(create_session, address, SESSION_SECONDS),
        max_workers=1,
    )


def export_for(arch: str):
    """LocalBuilder's `f_export` for candidates that run on an `arch` board."""
    return partial(export_candidate, arch)
