"""The protocol's tensors: JSON `data` (row-major, flattened or nested) and the binary-tensor extension.

A request body is a JSON object, optionally followed by raw tensor bytes; then the header
`Inference-Header-Content-Length` gives the JSON part's length and each binary input says its
size in `parameters.binary_data_size`, in input order. Responses put outputs asked for as binary
(`binary_data` on an output, or `binary_data_output` for all) after the JSON the same way.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import ServeError

HEADER_LENGTH = "inference-header-content-length"
MAX_RANK, MAX_DIMENSION = 8, 2**31 - 1  # beyond any model input; past them numpy's own limits fail

# The protocol's datatype names and the numpy dtypes they travel as (little-endian in binary).
DATATYPES: dict[str, np.dtype] = {
    name: np.dtype(dtype)
    for name, dtype in {
        "BOOL": "bool",
        "UINT8": "uint8",
        "UINT16": "uint16",
        "UINT32": "uint32",
        "UINT64": "uint64",
        "INT8": "int8",
        "INT16": "int16",
        "INT32": "int32",
        "INT64": "int64",
        "FP16": "float16",
        "FP32": "float32",
        "FP64": "float64",
    }.items()
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items()}
# numpy kinds a JSON array may hold for each kind of datatype ("b" bool, "i"/"u" integers, "f" floats)
_JSON_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}


def datatype_of(dtype: str | np.dtype) -> str:
    """The protocol's name for a numpy dtype (`int64` -> `INT64`)."""
    try:
        return _NAMES[np.dtype(dtype)]
    except (KeyError, TypeError):
        raise ServeError(500, f"dtype {dtype} has no Open Inference Protocol datatype") from None


@dataclass(frozen=True)
class InferRequest:
    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: tuple[tuple[str, bool], ...] | None  # (name, as binary) per requested output; None: all
    binary_outputs: bool  # the request-wide default for outputs without their own `binary_data`


def parse_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    json_part, binary = _split_body(body, header_length)
    request = _json_object(json_part)
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ServeError(400, "the request has no `inputs` list")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for index, tensor in enumerate(inputs):
        name, array, offset = _input_tensor(index, tensor, binary, offset)
        if name in arrays:
            raise ServeError(400, f"input {name} is given twice")
        arrays[name] = array
    if offset != len(binary):
        raise ServeError(400, f"the body has {len(binary) - offset} bytes of binary data that no input claims")
    parameters = _parameters(request.get("parameters"), "the request")
    binary_default = _flag(parameters, "binary_data_output", "the request")
    request_id = request.get("id")
    return InferRequest(
        str(request_id) if request_id is not None else None,
        arrays,
        _requested_outputs(request.get("outputs"), binary_default),
        binary_default,
    )


def encode_infer_response(
    model: str, request_id: str | None, outputs: dict[str, np.ndarray], binary: dict[str, bool]
) -> tuple[bytes, int | None]:
    """(body, JSON length or None when there is no binary part) for outputs in order."""
    entries, blobs = [], []
    for name, array in outputs.items():
        entry: dict[str, Any] = {"name": name, "datatype": datatype_of(array.dtype), "shape": list(array.shape)}
        if binary[name]:
            blob = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise ServeError(
                    422,
                    f"output {name} holds NaN or infinite values, which JSON cannot carry; ask for it as binary "
                    '(outputs: [{"name": ..., "parameters": {"binary_data": true}}])',
                )
            entry["data"] = array.reshape(-1).tolist()
        entries.append(entry)
    response: dict[str, Any] = {"model_name": model, "model_version": "1", "outputs": entries}
    if request_id is not None:
        response["id"] = request_id
    head = json.dumps(response, separators=(",", ":")).encode()
    if not blobs:
        return head, None
    return head + b"".join(blobs), len(head)


def json_body(body: bytes) -> dict[str, Any]:
    """A JSON object body (the /predict endpoint)."""
    return _json_object(body)


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        length = -1
    if not 0 < length <= len(body):
        raise ServeError(
            400, f"Inference-Header-Content-Length {header_length!r} is not a length within the {len(body)}-byte body"
        )
    return body[:length], body[length:]


def _not_json(constant: str):
    raise ServeError(400, f"the request body holds {constant}, which JSON has no number for; send finite numbers")


def _json_object(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data, parse_constant=_not_json)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ServeError(400, f"the request body is not valid JSON ({exc})") from None
    except RecursionError:
        raise ServeError(400, "the request body nests JSON too deeply") from None
    if not isinstance(value, dict):
        raise ServeError(400, f"the request body must be a JSON object, found {type(value).__name__}")
    return value


def _input_tensor(index: int, tensor: Any, binary: bytes, offset: int) -> tuple[str, np.ndarray, int]:
    if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
        raise ServeError(400, f"input {index} must be an object with a `name`")
    name = tensor["name"]
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        raise ServeError(400, f"input {name} has datatype {datatype!r}; supported: {', '.join(DATATYPES)}")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ServeError(400, f"input {name} needs a `shape`: a list of non-negative integers, found {shape!r}")
    if len(shape) > MAX_RANK or any(d > MAX_DIMENSION for d in shape):
        raise ServeError(
            400, f"input {name} has shape {shape}: at most {MAX_RANK} dimensions of at most {MAX_DIMENSION} each"
        )
    dtype = DATATYPES[datatype]
    size = _binary_size(name, _parameters(tensor.get("parameters"), f"input {name}"))
    if size is None:
        return name, _from_json(name, tensor.get("data"), dtype, shape), offset
    if "data" in tensor:
        raise ServeError(400, f"input {name} gives both `data` and binary_data_size; send one of them")
    expected = math.prod(shape) * dtype.itemsize  # Python integers: no overflow
    if size != expected:
        raise ServeError(
            400, f"input {name} says binary_data_size {size}, but shape {shape} of {datatype} takes {expected} bytes"
        )
    if offset + size > len(binary):
        raise ServeError(
            400, f"input {name} needs {size} bytes of binary data, but only {len(binary) - offset} are left in the body"
        )
    array = np.frombuffer(binary, dtype=dtype.newbyteorder("<"), count=size // dtype.itemsize, offset=offset)
    return name, array.astype(dtype).reshape(shape), offset + size


def _binary_size(name: str, parameters: dict[str, Any]) -> int | None:
    size = parameters.get("binary_data_size")
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise ServeError(400, f"input {name} has binary_data_size {size!r}; expected a byte count")
    return size


def _from_json(name: str, data: Any, dtype: np.dtype, shape: list[int]) -> np.ndarray:
    if not isinstance(data, list):
        raise ServeError(400, f"input {name} needs `data` (a list) or a binary_data_size parameter")
    try:
        array = np.asarray(data)
    except ValueError:
        raise ServeError(400, f"input {name} has ragged `data`: nested lists must have equal lengths") from None
    if dtype.kind != "b" and array.dtype.kind != "b" and _holds_bool(data):  # numpy reads [1, true] as [1, 1]
        raise ServeError(400, f"input {name} data holds booleans (true/false), not {_NAMES[dtype]}")
    if array.size and array.dtype.kind not in _JSON_KINDS[dtype.kind]:
        raise ServeError(
            400,
            f"input {name} data holds {array.dtype.kind!r}-kind values ({_describe_kind(array)}), not {_NAMES[dtype]}",
        )
    expected = math.prod(shape)
    if array.size != expected:
        raise ServeError(400, f"input {name} has {array.size} values, but shape {shape} needs {expected}")
    if dtype.kind in "iu" and array.size and array.dtype.kind in "iu":
        info = np.iinfo(dtype)
        if array.min() < info.min or array.max() > info.max:
            raise ServeError(400, f"input {name} has values outside the {_NAMES[dtype]} range")
    with np.errstate(over="ignore"):
        converted = array.astype(dtype).reshape(shape)
    if dtype.kind == "f" and not np.isfinite(converted).all():  # JSON holds finite numbers only: an overflow
        raise ServeError(
            400, f"input {name} has values beyond its range (±{np.finfo(dtype).max:.4g} for {_NAMES[dtype]})"
        )
    return converted


def _holds_bool(data: list) -> bool:
    """Whether a decoded JSON array holds `true` or `false` at any depth."""
    pending = [data]
    while pending:
        for value in pending.pop():
            if value.__class__ is bool:
                return True
            if value.__class__ is list:
                pending.append(value)
    return False


def _describe_kind(array: np.ndarray) -> str:
    return {"U": "strings", "O": "mixed or too large values", "f": "floats", "b": "booleans"}.get(
        array.dtype.kind, str(array.dtype)
    )


def _parameters(parameters: Any, where: str) -> dict[str, Any]:
    if parameters is None:
        return {}
    if not isinstance(parameters, dict):
        raise ServeError(400, f"`parameters` of {where} must be an object")
    return parameters


def _requested_outputs(outputs: Any, binary_default: bool) -> tuple[tuple[str, bool], ...] | None:
    if outputs is None:
        return None
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise ServeError(400, "`outputs` must be a list of objects with a `name`")
    requested = []
    for output in outputs:
        where = f"output {output['name']}"
        parameters = _parameters(output.get("parameters"), where)
        if "classification" in parameters:
            raise ServeError(
                400,
                f"{where} asks for the classification extension (class_count), which this server does not offer; "
                "POST the texts or images to /v2/models/NAME/predict for labels, or take the logits",
            )
        requested.append((output["name"], _flag(parameters, "binary_data", where, binary_default)))
    return tuple(requested)


def _flag(parameters: dict[str, Any], key: str, where: str, default: bool = False) -> bool:
    value = parameters.get(key, default)
    if not isinstance(value, bool):
        raise ServeError(400, f"parameter {key} of {where} must be true or false, found {value!r}")
    return value
