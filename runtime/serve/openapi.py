"""The server's OpenAPI 3.1 description (`GET /openapi.json`) and a readable page of it (`GET /docs`),
self-contained: a device has no internet to fetch a Swagger UI from."""

from __future__ import annotations

from html import escape
from typing import Any

_TENSOR = {
    "type": "object",
    "required": ["name", "shape", "datatype"],
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {
            "type": "string",
            "enum": [
                "BOOL",
                "UINT8",
                "UINT16",
                "UINT32",
                "UINT64",
                "INT8",
                "INT16",
                "INT32",
                "INT64",
                "FP16",
                "FP32",
                "FP64",
            ],
        },
        "data": {"type": "array", "description": "row-major, flat or nested"},
        "parameters": {"type": "object"},
    },
}
_ERROR = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _json(schema: dict) -> dict:
    return {"content": {"application/json": {"schema": schema}}}


def _operation(summary: str, ok: dict | None = None, body: dict | None = None, errors: tuple[int, ...] = ()) -> dict:
    responses: dict[str, Any] = {"200": {"description": "OK", **(_json(ok) if ok else {})}}
    for status in errors:
        responses[str(status)] = {"description": "refused", **_json(_ERROR)}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        operation["requestBody"] = {"required": True, **_json(body)}
    return operation


def openapi(models: list[str], version: str) -> dict[str, Any]:
    name = {"name": "model_name", "in": "path", "required": True, "schema": {"type": "string", "enum": models}}
    infer_body = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "inputs": {"type": "array", "items": _TENSOR},
            "outputs": {"type": "array", "items": {"type": "object"}},
            "parameters": {"type": "object"},
        },
    }
    infer_answer = {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": _TENSOR},
        },
    }
    predict_body = {
        "type": "object",
        "description": 'a text model: {"texts": [...]}; an image model: {"images": [base64 of each image '
        'file], "top": N}',
        "properties": {
            "texts": {"type": "array", "items": {"type": "string"}},
            "images": {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}},
            "top": {"type": "integer", "minimum": 1, "default": 5, "description": "image models: labels returned"},
        },
        "additionalProperties": False,
    }
    model_paths = {
        "/v2/models/{model_name}": {
            "get": _operation("model metadata: inputs, outputs, datatypes, shapes (-1: dynamic)", errors=(404,))
        },
        "/v2/models/{model_name}/ready": {"get": _operation("whether the model is loaded", errors=(404,))},
        "/v2/models/{model_name}/infer": {
            "post": _operation(
                "run the model on tensors (JSON, or the binary tensor extension with Inference-Header-Content-Length)",
                infer_answer,
                infer_body,
                (400, 404, 408, 413, 415, 503),
            )
        },
        "/v2/models/{model_name}/predict": {
            "post": _operation(
                "labels, tags or embeddings for texts, or the top labels of images, through the model's task",
                {"type": "object"},
                predict_body,
                (400, 404, 408, 413, 422, 503),
            )
        },
    }
    for path in model_paths.values():
        for operation in path.values():
            operation["parameters"] = [name]
    return {
        "openapi": "3.1.0",
        "info": {"title": "edgekiln serve (Open Inference Protocol v2)", "version": version},
        "paths": {
            "/v2/health/live": {"get": _operation("the server is up")},
            "/v2/health/ready": {"get": _operation("every model is loaded")},
            "/v2": {"get": _operation("server metadata and extensions")},
            **model_paths,
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {"200": {"description": "text exposition format"}},
                }
            },
        },
    }


def docs_page(spec: dict[str, Any]) -> str:
    rows = "".join(
        f"<tr><td><code>{escape(method.upper())}</code></td><td><code>{escape(path)}</code></td>"
        f"<td>{escape(operation['summary'])}</td></tr>"
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    )
    models = spec["paths"]["/v2/models/{model_name}"]["get"]["parameters"][0]["schema"]["enum"]
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(spec['info']['title'])}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td{padding:3px 10px;border-bottom:1px solid #ddd}"
        f"</style></head><body><h1>{escape(spec['info']['title'])}</h1><p>Models: "
        f"{escape(', '.join(models))}. Machine-readable: <a href='/openapi.json'>/openapi.json</a>.</p>"
        f"<table>{rows}</table></body></html>"
    )
