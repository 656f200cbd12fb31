"""The server's typed settings (the CLI flags of `edgekiln serve`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_WAIT_MS = 10_000.0  # a batching wait past 10 s is a typo, not a latency trade-off


class ServeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    max_batch: int = Field(default=8, ge=1, description="rows merged into one model call (1: no batching)")
    max_wait_ms: float = Field(
        default=2.0, ge=0, le=MAX_WAIT_MS, description="how long a request waits for others to merge with"
    )
    max_queue: int = Field(default=256, ge=1, description="requests waiting or running per model before 503")
    max_body_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    max_request_rows: int = Field(default=512, ge=1, description="texts or images one /predict request may hold")
    max_infer_rows: int | None = Field(
        default=None, ge=1, description="batch rows of one /infer (None: the body limit)"
    )
    body_timeout_seconds: float = Field(default=30.0, gt=0, description="time a client has to send its body")
    max_connections: int = Field(default=1024, ge=1, description="open connections before 503")
    max_text_chars: int = Field(default=10_000, ge=1, description="characters per text for /predict")
    threads: int | None = Field(default=None, ge=1, description="inference threads per model")
    graceful_seconds: float = Field(default=30.0, gt=0, description="how long shutdown waits for requests")
