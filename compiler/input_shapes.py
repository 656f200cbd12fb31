"""Input shapes a raw-tensor model takes: declared in the recipe (`source.input_shapes`, the CLI's
`--input-shape NAME:1x3x[320..1280:32]x[320..1280:32]`) or read from the model.

Each dimension is a fixed size or a range `min..max:multiple`. Without a declaration a dimension
comes from the model: fixed sizes stay, a named dimension is one size wherever it appears, and a
`-1` or unnamed one is dynamic (the batch axis gets the batch size, any other the "sequence" size:
the old rule, which a failed check answers with the `--input-shape` flag to pass).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_serializer, model_validator

from edgekiln.runtime.manifest import TensorSpec
from edgekiln.runtime.synthetic import BATCH_AXIS, SEQUENCE_AXIS, range_of

from .errors import CompileError

_RANGE = re.compile(r"^\s*(\d+)\s*\.\.\s*(\d+)\s*(?::\s*(\d+)\s*)?$")
FLAG = "--input-shape"
Pick = Literal["min", "mid", "max"]


class DimRange(BaseModel):
    """Sizes min..max that are multiples of `multiple` (written `320..1280:32`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    min: int = Field(ge=1)
    max: int = Field(ge=1)
    multiple: int = Field(default=1, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        match = _RANGE.match(value.strip("[] "))
        if not match:
            raise ValueError(f"a range reads MIN..MAX or MIN..MAX:MULTIPLE, e.g. 320..1280:32 (found {value!r})")
        low, high, multiple = match.groups()
        return {"min": int(low), "max": int(high), "multiple": int(multiple or 1)}

    @model_validator(mode="after")
    def _nonempty(self) -> DimRange:
        if self.smallest() > self.max:
            raise ValueError(f"no multiple of {self.multiple} lies in {self.min}..{self.max}")
        return self

    @model_serializer
    def _text(self) -> str:
        return str(self)

    def __str__(self) -> str:
        return f"{self.min}..{self.max}" + (f":{self.multiple}" if self.multiple != 1 else "")

    def smallest(self) -> int:
        return -(-self.min // self.multiple) * self.multiple

    def largest(self) -> int:
        return self.max // self.multiple * self.multiple

    def size(self, pick: Pick) -> int:
        low, high = self.smallest(), self.largest()
        if pick == "min":
            return low
        if pick == "max":
            return high
        return low + (high - low) // 2 // self.multiple * self.multiple

    def clamp(self, size: int) -> int:
        size = min(max(size, self.smallest()), self.largest())
        return size // self.multiple * self.multiple if size >= self.smallest() else self.smallest()


Dim = Annotated[int, Field(ge=1)] | DimRange
InputShapes = dict[str, tuple[Dim, ...]]


# --- the CLI's text form ---------------------------------------------------------------------------
def parse_input_shape(text: str) -> tuple[str, tuple[Dim, ...]]:
    """`NAME:1x3x[320..1280:32]x640` -> (NAME, dims). The name may hold ':' (TensorFlow's `x:0`)."""
    depth, cut = 0, -1
    for index in range(len(text) - 1, -1, -1):
        char = text[index]
        depth += {"]": 1, "[": -1}.get(char, 0)
        if char == ":" and depth == 0:
            cut = index
            break
    if cut <= 0 or cut == len(text) - 1:
        raise CompileError(f"{FLAG} {text!r} is not NAME:SHAPE", hint=f"e.g. {FLAG} images:1x3x640x640")
    name, shape = text[:cut], text[cut + 1 :]
    return name, tuple(_parse_dim(token, text) for token in _split_dims(shape, text))


def _split_dims(shape: str, text: str) -> list[str]:
    tokens, current, depth = [], "", 0
    for char in shape:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth < 0 or depth > 1:
            raise CompileError(f"{FLAG} {text!r}: unbalanced brackets", hint="write a range as [MIN..MAX:MULTIPLE]")
        if char in "xX" and depth == 0:
            tokens.append(current)
            current = ""
        else:
            current += char
    return tokens + [current]


def _parse_dim(token: str, text: str) -> Dim:
    token = token.strip()
    if token.isdigit() and int(token) > 0:
        return int(token)
    if token.startswith("[") and token.endswith("]"):
        try:
            return DimRange.model_validate(token)
        except ValidationError as exc:
            error = exc.errors()[0]
            reason = error["msg"].removeprefix("Value error, ")
            if error["loc"]:
                reason = f"{error['loc'][0]}: {reason}"
            raise CompileError(f"{FLAG} {text!r}: {token} {reason}", hint="e.g. [320..1280:32]") from None
    raise CompileError(
        f"{FLAG} {text!r}: dimension {token!r} is neither a positive size nor a range",
        hint=f"e.g. {FLAG} images:1x3x[320..1280:32]x[320..1280:32]",
    )


def format_input_shape(name: str, dims: tuple[Dim, ...]) -> str:
    return f"{name}:" + "x".join(str(d) if isinstance(d, int) else f"[{d}]" for d in dims)


def shapes_from_flags(values: list[str] | None) -> InputShapes | None:
    if not values:
        return None
    shapes: InputShapes = {}
    for value in values:
        name, dims = parse_input_shape(value)
        if name in shapes:
            raise CompileError(f"{FLAG} names input {name!r} twice", hint="give each input one shape")
        shapes[name] = dims
    return shapes


# --- declared shapes against the model --------------------------------------------------------------
@dataclass(frozen=True)
class ShapePlan:
    """Per input, each dimension: a fixed size, a range, or a dynamic axis name (undeclared)."""

    inputs: tuple[TensorSpec, ...]
    dims: dict[str, tuple[int | DimRange | str, ...]]

    @property
    def has_ranges(self) -> bool:
        return any(isinstance(d, DimRange) for dims in self.dims.values() for d in dims)

    @property
    def has_dynamic(self) -> bool:
        return any(isinstance(d, str) for dims in self.dims.values() for d in dims)

    @property
    def uses_sequence(self) -> bool:
        """Whether some undeclared dynamic axis takes the sequence size (see `shape`)."""
        return any(
            isinstance(d, str) and d != BATCH_AXIS and (axis > 0 or d == SEQUENCE_AXIS)
            for dims in self.dims.values()
            for axis, d in enumerate(dims)
        )

    def shape(self, name: str, batch: int, sequence: int, pick: Pick | None = None) -> list[int]:
        """Concrete sizes: fixed ones; a range's `pick` (none: the batch clamped into it on axis 0, else its
        middle); an undeclared dynamic axis as of old (batch on axis 0 or `batch`, else `sequence`)."""
        sizes = []
        for axis, dim in enumerate(self.dims[name]):
            if isinstance(dim, int):
                sizes.append(dim)
            elif isinstance(dim, DimRange):
                sizes.append(dim.size(pick) if pick else dim.clamp(batch) if axis == 0 else dim.size("mid"))
            elif dim == BATCH_AXIS or (axis == 0 and dim != SEQUENCE_AXIS):
                sizes.append(batch)
            else:
                sizes.append(sequence)
        return sizes

    def suggestion(self) -> str:
        """The `--input-shape` flags to pass: what is declared or fixed, a guess for the rest."""
        flags = []
        for spec in self.inputs:
            dims = self.dims[spec.name]
            image = len(dims) == 4 and spec.dtype.startswith("float")
            guess = [
                d
                if not isinstance(d, str)
                else 1
                if axis == 0
                else DimRange(min=32, max=1024, multiple=32)
                if image
                else DimRange(min=1, max=512)
                for axis, d in enumerate(dims)
            ]
            flags.append(f"{FLAG} {format_input_shape(spec.name, tuple(guess))}")
        return " ".join(flags)


def plan_shapes(inputs: tuple[TensorSpec, ...], declared: InputShapes | None) -> ShapePlan:
    declared = declared or {}
    names = [spec.name for spec in inputs]
    unknown = sorted(set(declared) - set(names))
    if unknown:
        raise CompileError(f"{FLAG} names {unknown}, which the model does not take", hint=f"its inputs: {names}")
    dims = {}
    for spec in inputs:
        given = declared.get(spec.name)
        if given is None:
            dims[spec.name] = tuple(_model_dim(d) for d in spec.shape)
            _check_size(spec, dims[spec.name], declared=False)
            continue
        if len(given) != len(spec.shape):
            raise CompileError(
                f"{FLAG} gives input {spec.name!r} {len(given)} dimensions; the model's has "
                f"{len(spec.shape)} {list(spec.shape)}",
                hint="give one size or range per dimension",
            )
        for axis, (model_dim, dim) in enumerate(zip(spec.shape, given, strict=True)):
            if isinstance(model_dim, int) and dim != model_dim:
                raise CompileError(
                    f"{FLAG} sets dimension {axis} of {spec.name!r} to {dim}; the model fixes it at {model_dim}",
                    hint=f"use {model_dim} there",
                )
        dims[spec.name] = tuple(given)
        _check_size(spec, dims[spec.name])
    return ShapePlan(inputs, dims)


# One input's largest declared shape: 1 GiB of float32. The compile's checks hold several batches of it
# and their outputs at once (a declared 400M-value input was killed for memory at 16 GB). A model's own
# fixed shape is held to 8 GiB: past that nothing could allocate it.
MAX_ELEMENTS, MAX_FIXED_ELEMENTS = 1 << 28, 1 << 31


def _check_size(spec: TensorSpec, dims: tuple, *, declared: bool = True) -> None:
    """A shape whose largest case would not fit in memory is refused before anything is allocated."""
    largest = 1
    for dim in dims:
        largest *= dim.max if isinstance(dim, DimRange) else dim if isinstance(dim, int) else 1
    if declared and largest > MAX_ELEMENTS:
        raise CompileError(
            f"{FLAG} gives input {spec.name!r} up to {largest:,} values; the compile's checks run at most "
            f"{MAX_ELEMENTS:,} per input",
            hint="declare the sizes the model really takes",
        )
    if not declared and largest > MAX_FIXED_ELEMENTS:
        raise CompileError(
            f"the model fixes input {spec.name!r} at {largest:,} values, more than the compile's checks can "
            f"allocate ({MAX_FIXED_ELEMENTS:,})",
            hint="export it with the sizes it really takes, or with dynamic axes and declare them with "
            f"{FLAG} NAME:SIZES",
        )


def _model_dim(dim: int | str) -> int | DimRange | str:
    """A compiled model's range axis (named `NAME[MIN..MAX:MULTIPLE]`) reads back as its range."""
    bounds = range_of(dim) if isinstance(dim, str) else None
    return DimRange(min=bounds[0], max=bounds[1], multiple=bounds[2]) if bounds else dim


def range_name(base: str, dim: DimRange) -> str:
    """The name a range axis gets in the compiled model, which the runtime reads back (`range_of`)."""
    return f"{base}[{dim}]"


def plan_feeds(plan: ShapePlan, batch: int, sequence: int, rng, pick: Pick | None = None) -> dict:
    """Random inputs of the plan's shapes (see `ShapePlan.shape`)."""
    from edgekiln.runtime.synthetic import make_tensor_feeds

    specs = [
        spec.model_copy(update={"shape": tuple(plan.shape(spec.name, batch, sequence, pick))}) for spec in plan.inputs
    ]
    return make_tensor_feeds(specs, batch, sequence, rng)


def shape_cases(plan: ShapePlan, shapes: tuple[tuple[int, int], ...], rng) -> list[tuple]:
    """(batch, sequence, feeds) for a fidelity check: with declared ranges, the smallest, the middle
    and the largest shape of every range; otherwise the (batch, sequence) shapes as before."""
    if not plan.has_ranges:
        return [(batch, sequence, plan_feeds(plan, batch, sequence, rng)) for batch, sequence in shapes]
    batch, sequence = shapes[0]
    cases = []
    for pick in ("min", "mid", "max"):
        feeds = plan_feeds(plan, batch, sequence, rng, pick)
        first = next(iter(feeds.values()))
        cases.append((int(first.shape[0]) if first.ndim else 1, None, feeds))
    return cases


_NODE_NAME = re.compile(r"Name:\s*'([^']*)'")
_NODE_OP = re.compile(r"while running (\w+) node")
_SOURCE_NOISE = re.compile(r"/\S+\.(?:h|cc|cpp):\d+\s*|\S+ [\w:]+::\w+\([^)]*\)\s*")


def run_failure(exc: Exception, feeds: dict, who: str, hint: str | None) -> CompileError:
    """One line for a model that failed on the shapes it was given: which inputs, which shapes, the
    failing node when the runtime names it, and the `--input-shape` flag to pass."""
    text = " ".join(str(exc).split())
    name, op = _NODE_NAME.search(text), _NODE_OP.search(text)
    node = (f" at node {name[1]!r}" if name else "") + (f" ({op[1]})" if op else "")
    reason = _SOURCE_NOISE.sub("", text.split("Status Message:")[-1]).strip()[:200]
    shapes = ", ".join(f"{name} {list(np.shape(value))}" for name, value in feeds.items())
    return CompileError(
        f"{who} failed on inputs {shapes}{node}: {reason}",
        hint=f"declare the shapes the model takes, e.g. {hint}"
        if hint
        else f"declare the shapes the model takes with {FLAG} NAME:SHAPE",
    )


def suggestion(state) -> str | None:
    """The `--input-shape` flags for a build's source, when it is a raw-tensor file."""
    plan = getattr(state.source, "shape_plan", None)
    return plan.suggestion() if plan is not None else None
