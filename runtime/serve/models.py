"""An artifact as a served model: its name and metadata, the checks a request's tensors must pass,
and how requests merge into one model call (padding the sequence axis) and split back."""

from __future__ import annotations

import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError
from ..manifest import TensorSpec
from ..synthetic import range_of
from .errors import ServeError
from .tensors import DATATYPES, datatype_of

if TYPE_CHECKING:
    from ..session import Session

CHUNK_ROWS = 64  # rows per model call when one /infer request holds more
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def parse_model_arg(text: str) -> tuple[str | None, Path]:
    """`ART` or `NAME=ART` (a path that itself holds '=' needs the NAME= form)."""
    name, sep, path = text.partition("=")
    if sep and _NAME.match(name):
        return name, Path(path)
    return None, Path(text)


def default_name(source: str, folder: Path) -> str:
    """A URL-safe model name from the manifest's source (or the folder's name when that is empty)."""
    base = Path(source).name or folder.resolve().name
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", base).strip("-.") or "model"
    return name[:128]


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise InputError(
            f"model name {name!r} is not usable in a URL", hint="use letters, digits, '.', '_' and '-' (NAME=ART)"
        )
    return name


@dataclass(frozen=True)
class _Axes:
    """Which axis of a tensor is the batch (0 when dynamic) and which are sequence axes (by name)."""

    batch: bool
    sequence: dict[int, str]


def _ranged(size) -> bool:
    return isinstance(size, str) and range_of(size) is not None


def _axes(spec: TensorSpec) -> _Axes:
    dynamic = {axis: size for axis, size in enumerate(spec.shape) if isinstance(size, str)}
    batch = 0 in dynamic
    return _Axes(batch, {axis: name for axis, name in dynamic.items() if axis != 0 or not batch})


class ServedModel:
    """One artifact's session behind a model name; every method here runs on its worker thread
    (`run_infer`, `run_predict`) or only reads the manifest (the rest)."""

    def __init__(self, name: str, session: Session) -> None:
        self.name = check_name(name)
        self.session = session
        manifest = session.manifest
        self.inputs = {spec.name: spec for spec in manifest.inputs}
        self.outputs = {spec.name: spec for spec in manifest.outputs}
        self._in_axes = {name: _axes(spec) for name, spec in self.inputs.items()}
        sequence_names = {axis for axes in self._in_axes.values() for axis in axes.sequence.values()}
        # output axes cut back to each request's own length after a padded merge
        self._out_cut = {
            name: [axis for axis, size in _axes(spec).sequence.items() if size in sequence_names]
            for name, spec in self.outputs.items()
        }
        tokenizer = manifest.tokenizer
        feeds = tokenizer.feeds if tokenizer else {}
        self._ids = [name for name, field in feeds.items() if field == "ids"]
        self._pad = {name: (tokenizer.pad_id if name in self._ids else 0) for name in self.inputs} if tokenizer else {}
        # Padding a merged batch is only harmless when the model masks it out.
        self.pads_sequences = "attention_mask" in feeds.values() and not tokenizer.pad_sensitive
        self.max_length = tokenizer.max_length if tokenizer else None
        self.id_limit = _id_limit(session) if self._ids else None
        self.batchable = all(axes.batch for axes in self._in_axes.values())
        # one request may run in row chunks when every output's first axis is the inputs' batch axis (by
        # name: a detector's "boxes" axis is not, and chunks would mix its rows)
        batch_names = {spec.shape[0] for spec in manifest.inputs if spec.shape and isinstance(spec.shape[0], str)}
        self.chunkable = self.batchable and all(
            spec.shape and spec.shape[0] in batch_names for spec in manifest.outputs
        )
        # a declared batch range (N[1..4]) bounds a merged call's rows
        highs = [range_of(spec.shape[0])[1] for spec in manifest.inputs if spec.shape and _ranged(spec.shape[0])]
        self.max_rows = min(highs) if highs else None
        self.warm = None  # the WarmUp load_models ran, if any

    # -- metadata ---------------------------------------------------------------------------------
    def metadata(self) -> dict[str, Any]:
        manifest = self.session.manifest
        return {
            "name": self.name,
            "versions": ["1"],
            "platform": f"edgekiln_{manifest.backend}",
            "inputs": [_tensor_metadata(spec) for spec in manifest.inputs],
            "outputs": [_tensor_metadata(spec) for spec in manifest.outputs],
        }

    # -- checks -----------------------------------------------------------------------------------
    def check_inputs(self, arrays: dict[str, np.ndarray]) -> int:
        """Raise a 400 ServeError unless `arrays` fit the model; return the request's row count."""
        missing = [name for name in self.inputs if name not in arrays]
        unknown = [name for name in arrays if name not in self.inputs]
        if missing or unknown:
            raise ServeError(
                400, f"model {self.name} takes inputs {list(self.inputs)}; missing {missing}, unknown {unknown}"
            )
        for name, array in arrays.items():
            self._check_input(self.inputs[name], array)
        rows = {array.shape[0] for name, array in arrays.items() if array.ndim and self._in_axes[name].batch}
        if len(rows) > 1:
            raise ServeError(400, f"inputs disagree on the batch size: {sorted(rows)}")
        sizes: dict[str, set[int]] = {}  # per axis name: an image's H and W are two axes, a text's one sequence
        for name, array in arrays.items():
            for axis, dimension in self._in_axes[name].sequence.items():
                sizes.setdefault(dimension, set()).add(array.shape[axis])
        for dimension, found in sizes.items():
            if len(found) > 1:
                raise ServeError(400, f"inputs disagree on the {dimension} size: {sorted(found)}")
        return rows.pop() if rows else 1

    def _check_input(self, spec: TensorSpec, array: np.ndarray) -> None:
        expected = datatype_of(spec.dtype)
        if array.dtype != DATATYPES[expected]:
            raise ServeError(400, f"input {spec.name} has datatype {datatype_of(array.dtype)}, expected {expected}")
        shown = [size if isinstance(size, int) else -1 for size in spec.shape]
        if array.ndim != len(spec.shape) or any(
            isinstance(size, int) and size != got for size, got in zip(spec.shape, array.shape)
        ):
            raise ServeError(400, f"input {spec.name} has shape {list(array.shape)}, expected {shown} (-1: any size)")
        if self.max_length is not None:
            too_long = [
                array.shape[axis] for axis in self._in_axes[spec.name].sequence if array.shape[axis] > self.max_length
            ]
            if too_long:
                raise ServeError(
                    400, f"input {spec.name} has sequence length {too_long[0]}, more than the model's {self.max_length}"
                )
        if spec.name in self._ids and array.size and (array.min() < 0 or array.max() >= self.id_limit):
            raise ServeError(
                400,
                f"input {spec.name} has token ids outside the artifact's tokenizer vocabulary (0..{self.id_limit - 1})",
            )

    def output_names(self, requested: Sequence[str] | None) -> list[str]:
        names = list(self.outputs) if requested is None else list(requested)
        unknown = [name for name in names if name not in self.outputs]
        if unknown:
            raise ServeError(
                400, f"model {self.name} has no output {unknown[0]!r}; its outputs are {list(self.outputs)}"
            )
        return names

    # -- batching ---------------------------------------------------------------------------------
    def infer_key(self, arrays: dict[str, np.ndarray]) -> Hashable:
        """Requests merge only when their keys are equal: same non-batch shapes, the sequence axis
        aside when the model masks padding."""
        if not self.batchable:
            return object()  # never merged
        return tuple(
            (
                name,
                tuple(
                    size
                    for axis, size in enumerate(arrays[name].shape)
                    if axis and not (self.pads_sequences and axis in self._in_axes[name].sequence)
                ),
            )
            for name in self.inputs
        )

    def run_infer(self, requests: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        """Run requests merged into one call (padded to the longest sequence); split the outputs back."""
        if len(requests) == 1:
            return [self._run_in_chunks(requests[0])]
        if not self.pads_sequences:  # merged only with equal shapes (infer_key): rows stack, nothing to pad or cut
            lengths = [None] * len(requests)
        else:
            lengths = [self._sequence_length(arrays) for arrays in requests]
        longest = max((n for n in lengths if n is not None), default=None)
        feeds = {
            name: np.concatenate([self._pad_to(name, arrays[name], longest) for arrays in requests])
            for name in self.inputs
        }
        merged = self.session.run(feeds)
        results, start = [], 0
        for arrays, length in zip(requests, lengths):
            rows = next(iter(arrays.values())).shape[0]
            results.append({name: self._cut(name, out[start : start + rows], length) for name, out in merged.items()})
            start += rows
        return results

    def _run_in_chunks(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One request, CHUNK_ROWS rows per call when every input and output has a batch axis: a model's
        activations grow with the batch (a 5,400-row request to a token model took 1 GB)."""
        rows = next(iter(arrays.values())).shape[0] if self.chunkable else 0  # every input has a batch axis
        if rows <= CHUNK_ROWS:
            return self.session.run(arrays)
        parts = [
            self.session.run({name: array[start : start + CHUNK_ROWS] for name, array in arrays.items()})
            for start in range(0, rows, CHUNK_ROWS)
        ]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def run_predict(self, requests: list[tuple[list[str] | list[bytes], int | None]]) -> list[Any]:
        """Texts, or an image model's encoded image files (and its `top`, the same for requests merged:
        it is part of their key), of several requests in one call."""
        top = requests[0][1]
        options = {} if top is None else {"top": top}
        answers = self.session.predict([item for items, _ in requests for item in items], **options)
        results, start = [], 0
        for items, _ in requests:
            results.append(answers[start : start + len(items)])
            start += len(items)
        return results

    def _sequence_length(self, arrays: dict[str, np.ndarray]) -> int | None:
        lengths = [arrays[name].shape[axis] for name in self.inputs for axis in self._in_axes[name].sequence]
        return lengths[0] if lengths else None

    def _pad_to(self, name: str, array: np.ndarray, longest: int | None) -> np.ndarray:
        if longest is None:
            return array
        widths = [(0, 0)] * array.ndim
        for axis in self._in_axes[name].sequence:
            widths[axis] = (0, longest - array.shape[axis])
        if not any(after for _, after in widths):
            return array
        return np.pad(array, widths, constant_values=self._pad.get(name, 0))

    def _cut(self, name: str, array: np.ndarray, length: int | None) -> np.ndarray:
        axes = self._out_cut.get(name)
        if not axes or length is None:
            return array
        index = [slice(None)] * array.ndim
        for axis in axes:
            index[axis] = slice(0, length)
        return np.ascontiguousarray(array[tuple(index)])


def load_models(
    args: Sequence[str], threads: int | None = None, *, warm_up: bool = True, trusted_keys: Sequence | None = None
) -> list[ServedModel]:
    """Each `ART` or `NAME=ART` loaded (hashes checked; signed by one of `trusted_keys` when given), named,
    and with `warm_up` run once per static shape (warmup.py) so that no request pays for a first call."""
    from ..session import load

    models = []
    for arg in args:
        name, path = parse_model_arg(arg)
        session = load(path, threads=threads, trusted_keys=trusted_keys)
        model = ServedModel(name or default_name(session.manifest.source, path), session)
        model.warm = _warm(model, path) if warm_up else None
        models.append(model)
    return models


def _warm(model: ServedModel, path: Path):
    try:
        return model.session.warm_up()
    except Exception as exc:  # the backend's own error type: one line, and how to start anyway
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputError(
            f"model {model.name} ({path}) failed its warm-up call on synthetic inputs: {first}",
            hint="serve it with --no-warm-up (its first requests then pay for the first call)",
        ) from None


def _id_limit(session: Session) -> int:
    """One past the largest token id the artifact's tokenizer emits (an embedding row exists for each): the
    manifest's bound, or the tokenizer's own for artifacts that do not record one."""
    if session.manifest.tokenizer.vocab_size:
        return session.manifest.tokenizer.vocab_size
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(session.folder / session.manifest.tokenizer.file))
    return max(tokenizer.get_vocab(with_added_tokens=True).values()) + 1


def _tensor_metadata(spec: TensorSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "datatype": datatype_of(spec.dtype),
        "shape": [size if isinstance(size, int) else -1 for size in spec.shape],
    }
