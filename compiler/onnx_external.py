"""ONNX models past protobuf's 2 GB limit: `model.onnx` plus its external-data files, one unit.

Every folder the compiler writes holds a model as `model.onnx` and, when its weights are stored
outside the protobuf, one `model.onnx.data` beside it, referenced by a relative `location`. Data
files never live outside the model's folder, so copying or renaming the folder (the pass cache,
the staging folders, the artifact) moves them together.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edgekiln.runtime.hashing import sha256_file, sha256_json

from .errors import CompileError

PROTOBUF_LIMIT = 2_000_000_000  # bytes; a ModelProto must stay below 2 GiB, keep a margin
DATA_SUFFIX = ".data"
_COPY_CHUNK = 64 << 20
_ALIGN = 4096  # data offsets aligned to pages, so runtimes can mmap each tensor
_hash_memo: dict[tuple[str, int, int], str] = {}


def external_tensors(model) -> list:
    """Every tensor of `model` (initializers, Constant attributes, subgraphs) stored externally."""
    from onnx import TensorProto
    from onnx.external_data_helper import _get_all_tensors

    return [tensor for tensor in _get_all_tensors(model) if tensor.data_location == TensorProto.EXTERNAL]


def _entries(tensor) -> dict[str, str]:
    return {entry.key: entry.value for entry in tensor.external_data}


def data_files(path: Path, model=None) -> list[Path]:
    """The external-data files the model at `path` reads, each checked to lie in its folder."""
    import onnx

    model = model if model is not None else onnx.load(str(path), load_external_data=False)
    folder = path.parent.resolve()
    found: dict[Path, None] = {}
    for tensor in external_tensors(model):
        location = _entries(tensor).get("location", "")
        resolved = (folder / location).resolve()
        plain = bool(location) and not Path(location).is_absolute() and ".." not in Path(location).parts
        if plain and folder not in resolved.parents:  # a link (a Hugging Face cache's blobs/): copy the files
            raise CompileError(
                f"{path.name} stores tensor {tensor.name!r} in {location}, a link to {resolved} outside its folder",
                hint=f"copy the model and its data into one folder as files (cp -L {path.name} {location} DIR/)",
            )
        if not location or Path(location).is_absolute() or folder not in resolved.parents:
            raise CompileError(
                f"{path.name} stores tensor {tensor.name!r} at {location!r}, outside its folder",
                hint="external-data locations must be relative paths beside the .onnx file",
            )
        if not resolved.is_file():
            raise CompileError(
                f"{path.name} stores tensor {tensor.name!r} in {location}, which does not exist in {folder}",
                hint="copy the model's external-data files beside it",
            )
        found[resolved] = None
    return list(found)


def model_files(path: Path) -> list[Path]:
    """`path` and its external-data files."""
    return [path, *data_files(path)]


def model_sha256(path: Path) -> str:
    """Hash of what a model computes from: the file alone, or the file and its data files."""
    files = model_files(path)
    if len(files) == 1:
        return _file_sha256(path)
    root = path.parent.resolve()  # data files lie there (data_files); the model itself may be a link
    return sha256_json(
        {path.name: _file_sha256(path)} | {file.relative_to(root).as_posix(): _file_sha256(file) for file in files[1:]}
    )


def _file_sha256(path: Path) -> str:
    """sha256 of a file, remembered while its size and mtime stay (large weights are hashed once)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hash_memo:
        _hash_memo[key] = sha256_file(path)
    return _hash_memo[key]


def save_model(model, path: Path) -> None:
    """Write `model` (its data in memory) as `path`, with one `path.data` beside it when it is too
    large for a single protobuf."""
    import onnx

    data = path.with_name(path.name + DATA_SUFFIX)
    data.unlink(missing_ok=True)
    if model.ByteSize() < PROTOBUF_LIMIT:
        onnx.save(model, str(path))
        return
    onnx.save(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=data.name,
        size_threshold=1024,
        convert_attribute=True,
    )


def save_streaming(model, source_folder: Path, path: Path) -> None:
    """Write `model`, whose external tensors point at files in `source_folder`, as `path` with all of
    them copied, chunk by chunk, into `path.data`: memory stays small whatever the weights' size."""
    import onnx

    tensors = external_tensors(model)
    if not tensors:
        onnx.save(model, str(path))
        return
    data = path.with_name(path.name + DATA_SUFFIX)
    temporary = data.with_name(data.name + ".partial")
    with open(temporary, "wb") as sink:
        for tensor in tensors:
            entries = _entries(tensor)
            offset = _pad_to_alignment(sink)
            length = _copy_range(
                source_folder / entries["location"], int(entries.get("offset", 0)), entries.get("length"), sink
            )
            del tensor.external_data[:]
            for key, value in (("location", data.name), ("offset", str(offset)), ("length", str(length))):
                tensor.external_data.add(key=key, value=value)
    os.replace(temporary, data)
    onnx.save(model, str(path))


def copy_model(source: Path, path: Path) -> None:
    """Copy the model at `source` to `path`, its data (wherever it was beside `source`) into `path.data`."""
    import onnx

    model = onnx.load(str(source), load_external_data=False)
    if not external_tensors(model):
        shutil.copyfile(source, path)
        return
    files = data_files(source, model)  # refuses locations outside the folder
    canonical = source.with_name(source.name + DATA_SUFFIX)
    if files == [canonical.resolve()] and path.name == source.name:  # already one model.onnx.data: byte copies
        shutil.copyfile(source, path)
        shutil.copyfile(canonical, path.with_name(canonical.name))
        return
    save_streaming(model, source.parent, path)


def external_bytes(model) -> int:
    """Bytes of the weights `model` stores in external-data files."""
    total = 0
    for tensor in external_tensors(model):
        length = _entries(tensor).get("length")
        total += int(length) if length is not None else 0
    return total


def copy_compact(source: Path, path: Path) -> None:
    """Like `copy_model`, but as one self-contained file whenever the model fits in a protobuf
    (a quantized model is about a quarter of its float weights)."""
    import onnx

    model = onnx.load(str(source), load_external_data=False)
    if external_tensors(model) and model.ByteSize() + external_bytes(model) < PROTOBUF_LIMIT:
        data_files(source, model)  # refuses locations outside the folder
        onnx.load_external_data_for_model(model, str(source.parent))
        save_model(model, path)
        return
    copy_model(source, path)


def remove_model(path: Path) -> None:
    """Delete a model written by `save_model`/`copy_model` (a scratch attempt) and its data file."""
    path.unlink(missing_ok=True)
    path.with_name(path.name + DATA_SUFFIX).unlink(missing_ok=True)


def _pad_to_alignment(sink) -> int:
    offset = sink.tell()
    padding = (-offset) % _ALIGN
    if padding:
        sink.write(b"\0" * padding)
    return offset + padding


def _copy_range(source: Path, offset: int, length: str | None, sink) -> int:
    with open(source, "rb") as handle:
        handle.seek(offset)
        remaining = int(length) if length is not None else os.path.getsize(source) - offset
        total = remaining
        while remaining:
            chunk = handle.read(min(_COPY_CHUNK, remaining))
            if not chunk:
                raise CompileError(
                    f"external-data file {source.name} ends before the tensor stored in it",
                    hint="the data file is truncated; copy it again",
                )
            sink.write(chunk)
            remaining -= len(chunk)
    return total


def consolidate(path: Path) -> None:
    """Gather the external data of the model at `path`, wherever beside it, into `path.data`
    (the TorchScript exporter writes one file per tensor past 2 GB)."""
    files = data_files(path)
    if not files or files == [path.with_name(path.name + DATA_SUFFIX).resolve()]:
        return
    scratch = path.parent / f".{path.name}.consolidating"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        copy_model(path, scratch / path.name)
        for file in files:
            file.unlink()
        for written in scratch.iterdir():
            os.replace(written, path.parent / written.name)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
