"""OpenVINO with static shapes: a text request is padded up to the next of the artifact's sequence
lengths and run on a model compiled for exactly that (batch, length).

OpenVINO's CPU plugin runs a dynamic-shape model, but every change of input shape costs it a
re-preparation of each node (measured on MiniLM int8: 2-3 ms on a 2-5 ms call, and ~30 ms the
first time a length is seen), while a static-shape model takes its fastest kernels. Applications
send changing lengths, so `openvino_shapes.json` lists lengths to pad to; each (batch, length) is
compiled on first use (OpenVINO's model cache keeps the blob for the next process). Requests longer
than the longest length, and new shapes once `max_compiled` models exist, run on the dynamic model:
static shapes are a speed-up, never a limit on what the artifact accepts."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..errors import InputError

SHAPES_FILE = "openvino_shapes.json"
SHAPES_FORMAT = 1
Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class StaticShapes(BaseModel):
    """`openvino_shapes.json`: the lengths to pad to and how each input and output is padded and cut."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: int = SHAPES_FORMAT
    sequences: tuple[int, ...] = Field(min_length=1)
    sequence_axes: dict[str, int] = Field(min_length=1)  # input name -> its sequence axis
    pad_values: dict[str, int] = {}  # value that pads each input (0 masks a position in attention_mask)
    output_sequence_axes: dict[str, int] = {}  # output name -> axis cut back to the request's length
    max_compiled: int = Field(default=16, ge=1)  # static models kept; further shapes run dynamic

    @field_validator("sequences")
    @classmethod
    def _increasing(cls, sequences: tuple[int, ...]) -> tuple[int, ...]:
        if list(sequences) != sorted(set(sequences)) or sequences[0] < 1:
            raise ValueError(f"sequence lengths must be increasing and positive, found {list(sequences)}")
        return sequences

    @field_validator("format")
    @classmethod
    def _known(cls, value: int) -> int:
        if value != SHAPES_FORMAT:
            raise ValueError(f"format {value} is not one this runtime reads ({SHAPES_FORMAT})")
        return value


class StaticDispatch:
    """Runs feeds on the static model for their padded shape, compiling it on first use (thread-safe)."""

    def __init__(self, shapes: StaticShapes, compile_static: Callable[[dict[str, list[int]]], Runner], dynamic: Runner):
        self._shapes = shapes
        self._compile = compile_static
        self._dynamic = dynamic
        self._compiled: dict[tuple[int, int], Runner | None] = {}
        self._compiling: dict[tuple[int, int], threading.Lock] = {}  # shapes being compiled, one lock each
        self._lock = threading.Lock()  # guards the two dicts, never held while compiling

    @property
    def lengths(self) -> tuple[int, ...]:
        return self._shapes.sequences

    @property
    def limit(self) -> int:
        return self._shapes.max_compiled

    @property
    def compiled_shapes(self) -> list[tuple[int, int]]:
        with self._lock:
            return sorted(key for key, runner in self._compiled.items() if runner is not None)

    def __call__(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        sequence = self._sequence_length(feeds)
        padded_length = next((s for s in self._shapes.sequences if s >= sequence), None)
        if padded_length is None:
            return self._dynamic(feeds)
        batch = next(iter(feeds.values())).shape[0]
        runner = self._runner(feeds, batch, padded_length)
        if runner is None:
            return self._dynamic(feeds)
        outputs = runner({name: self._pad(name, array, padded_length) for name, array in feeds.items()})
        return {name: self._cut(name, array, sequence) for name, array in outputs.items()}

    def _runner(self, feeds: dict[str, np.ndarray], batch: int, length: int) -> Runner | None:
        """The static model for (batch, length), compiled by the first caller that needs it; calls at
        shapes already compiled never wait for another shape's compile."""
        key = (batch, length)
        with self._lock:
            if key in self._compiled:
                return self._compiled[key]
            if len(self._compiled) + len(self._compiling) >= self._shapes.max_compiled and key not in self._compiling:
                return None
            gate = self._compiling.setdefault(key, threading.Lock())
        with gate:  # one compile per shape; its other callers wait for that one
            with self._lock:
                if key in self._compiled:
                    return self._compiled[key]
            try:
                runner = self._compile({name: self._static_shape(name, array, length) for name, array in feeds.items()})
            except RuntimeError:  # OpenVINO cannot fix this shape: it runs dynamic, as before
                runner = None
            with self._lock:
                self._compiled[key] = runner
                self._compiling.pop(key, None)
            return runner

    def _sequence_length(self, feeds: dict[str, np.ndarray]) -> int:
        lengths = {
            feeds[name].shape[axis]
            for name, axis in self._shapes.sequence_axes.items()
            if name in feeds and feeds[name].ndim > axis
        }
        if len(lengths) != 1:
            raise InputError(
                f"inputs disagree on the sequence length: {sorted(lengths)}"
                if lengths
                else f"the inputs have no sequence axis (expected {sorted(self._shapes.sequence_axes)})",
                hint="pass the tokenizer's input_ids, attention_mask, … of one batch",
            )
        return lengths.pop()

    def _static_shape(self, name: str, array: np.ndarray, length: int) -> list[int]:
        shape = list(array.shape)
        axis = self._shapes.sequence_axes.get(name)
        if axis is not None:
            shape[axis] = length
        return shape

    def _pad(self, name: str, array: np.ndarray, length: int) -> np.ndarray:
        axis = self._shapes.sequence_axes.get(name)
        if axis is None or array.shape[axis] == length:
            return array
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, length - array.shape[axis])
        return np.pad(array, widths, constant_values=self._shapes.pad_values.get(name, 0))

    def _cut(self, name: str, array: np.ndarray, sequence: int) -> np.ndarray:
        axis = self._shapes.output_sequence_axes.get(name)
        if axis is None or array.shape[axis] == sequence:
            return array
        return np.ascontiguousarray(np.take(array, np.arange(sequence), axis=axis))
