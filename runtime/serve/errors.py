"""The one error type a request can end in: an HTTP status and a one-line message."""

from __future__ import annotations


class ServeError(Exception):
    """A request the server refuses: sent to the client as `{"error": message}` with `status`."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
