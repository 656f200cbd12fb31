"""`edgekiln serve`: artifacts behind the Open Inference Protocol v2 (KServe / Triton REST).

One module per concern: `tensors` (the protocol's tensor codec, JSON and binary), `models` (an
artifact as a served model: metadata, checks, merging and splitting batches), `batching` (one
worker thread per model, where requests are merged and the model runs), `metrics` (Prometheus),
`app` (the ASGI routes). Needs the `edgekiln[serve]` extra (starlette, uvicorn, prometheus_client).
"""

from .config import ServeConfig

__all__ = ["ServeConfig"]
