"""Checking the arrays given to `Session.run` before any backend sees them.

Names, ranks and fixed sizes as the manifest declares; numbers only (no strings or objects that
numpy would parse); floats for integer inputs only when they are whole numbers; values that fit
the input's dtype; every named axis (batch, sequence) the same size in every input; sequences no
longer than the model's maximum; token ids inside the vocabulary, and an index input's values inside
the tables it indexes (the manifest's `value_range`). Each failure is one InputError.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .errors import InputError
from .manifest import TensorSpec, TokenizerSpec
from .synthetic import outside_range

_NUMBERS = "biuf"  # bool, signed and unsigned integers, floats
_SEQUENCE_AXIS = "sequence"


def check_feeds(
    feeds: Mapping[str, np.ndarray], inputs: tuple[TensorSpec, ...], tokenizer: TokenizerSpec | None
) -> dict[str, np.ndarray]:
    """The feeds as contiguous arrays of the manifest's dtypes, or InputError naming the first problem."""
    specs = {spec.name: spec for spec in inputs}
    if not isinstance(feeds, Mapping):
        raise InputError(
            f"feeds must be a mapping of input name to array, found {type(feeds).__name__}",
            hint=f"pass a dict with keys {sorted(specs)}",
        )
    missing = sorted(set(specs) - set(feeds))
    unknown = sorted(str(name) for name in set(feeds) - set(specs))
    if missing or unknown:
        raise InputError(
            f"feeds do not match the model inputs: missing {missing}, unexpected {unknown}",
            hint=f"expected exactly {sorted(specs)}",
        )
    checked = {name: _check_array(name, feeds[name], spec) for name, spec in specs.items()}
    _check_named_axes(checked, specs)
    if tokenizer is not None:
        _check_token_inputs(checked, specs, tokenizer)  # first: token ids are named as such
    for name, spec in specs.items():
        if spec.value_range is not None:
            _check_indices(name, checked[name], spec.value_range)
    return checked


def _check_array(name: str, value, spec: TensorSpec) -> np.ndarray:
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as exc:  # ragged nested lists
        raise InputError(f"input {name} is not a rectangular array ({exc})") from None
    if array.dtype.kind not in _NUMBERS:
        raise InputError(
            f"input {name} has dtype {array.dtype}; it takes numbers ({spec.dtype})",
            hint="pass real numbers of that dtype"
            if array.dtype.kind == "c"
            else "convert strings to numbers yourself, or use predict(texts) for text",
        )
    if array.ndim != len(spec.shape):
        raise InputError(
            f"input {name} has {array.ndim} dimensions, expected {len(spec.shape)} (shape {list(spec.shape)})"
        )
    for axis, size in enumerate(spec.shape):
        if array.shape[axis] == 0:
            raise InputError(f"input {name} is empty on axis {axis} (shape {list(array.shape)})")
        if isinstance(size, int) and array.shape[axis] != size:
            raise InputError(f"input {name} has size {array.shape[axis]} on axis {axis}, expected {size}")
        if isinstance(size, str):
            _check_range(name, axis, size, array.shape[axis])
    target = np.dtype(spec.dtype)
    if target.kind in "iu":
        _check_integral(name, array, target)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused below, not warned about
        converted = np.asarray(array, dtype=target, order="C")  # ascontiguousarray would make a scalar 1-d
    if (
        target.kind == "f"
        and array.dtype.kind in "fiu"
        and (array.dtype.itemsize > target.itemsize or target.itemsize < 4)
    ):
        _check_no_overflow(name, array, converted)
    return converted


def _check_indices(name: str, array: np.ndarray, allowed: tuple[int, int]) -> None:
    """An index input's values lie where the tables it indexes have rows (negative ones count from the end)."""
    low, high = array.min(), array.max()
    if low < allowed[0] or high > allowed[1]:
        raise InputError(
            f"input {name} holds values {low}..{high}; it indexes a table of {allowed[1] + 1} rows, so it "
            f"takes {allowed[0]}..{allowed[1]}",
            hint="check the indices you pass",
        )


def _check_range(name: str, axis: int, dimension: str, size: int) -> None:
    """A size on an axis compiled for a declared range (`H[64..160:32]`) lies in it."""
    takes = outside_range(dimension, size)
    if takes is not None:
        raise InputError(
            f"input {name} has size {size} on axis {axis}; this artifact takes {takes} there ({dimension})",
            hint="resize or pad the input, or recompile with a wider --input-shape range",
        )


def _check_no_overflow(name: str, original: np.ndarray, converted: np.ndarray) -> None:
    """Finite values that become infinite in the input's narrower float type are refused."""
    if not np.isfinite(converted).all() and np.isfinite(original[~np.isfinite(converted)]).any():
        finfo = np.finfo(converted.dtype)
        raise InputError(
            f"input {name} takes {converted.dtype} and holds values beyond its range (±{finfo.max:.4g})",
            hint="scale the input into the model's range",
        )


def _check_integral(name: str, array: np.ndarray, target: np.dtype) -> None:
    """Values converted to an integer dtype must be whole numbers that fit it."""
    if array.dtype.kind == "f" and not (np.isfinite(array).all() and (array == np.round(array)).all()):
        raise InputError(
            f"input {name} takes {target} and holds non-integral values (dtype {array.dtype})", hint="pass integers"
        )
    if array.dtype.kind == "b" or np.can_cast(array.dtype, target):
        return
    limits = np.iinfo(target)
    low, high = array.min(), array.max()
    if low < limits.min or high > limits.max:
        raise InputError(f"input {name} takes {target}; its values {low}..{high} do not fit")


def _check_named_axes(arrays: dict[str, np.ndarray], specs: dict[str, TensorSpec]) -> None:
    """Axes sharing a name (every input's batch, every token input's sequence) must agree."""
    seen: dict[str, tuple[str, int]] = {}
    for name, spec in specs.items():
        for axis, size in enumerate(spec.shape):
            if isinstance(size, int):
                continue
            first = seen.setdefault(size, (name, arrays[name].shape[axis]))
            if first[1] != arrays[name].shape[axis]:
                raise InputError(
                    f"inputs disagree on the {size} size: {first[0]} has {first[1]}, "
                    f"{name} has {arrays[name].shape[axis]}"
                )


def _check_token_inputs(arrays: dict[str, np.ndarray], specs: dict[str, TensorSpec], tokenizer: TokenizerSpec) -> None:
    """Sequence length against the model's maximum; ids, masks and type ids against their ranges."""
    for name, spec in specs.items():
        if _SEQUENCE_AXIS in spec.shape:
            length = arrays[name].shape[spec.shape.index(_SEQUENCE_AXIS)]
            if length > tokenizer.max_length:
                raise InputError(
                    f"input {name} has sequence length {length}; this model takes at most {tokenizer.max_length}",
                    hint="truncate the input",
                )
    for name, field in tokenizer.feeds.items():
        if name not in arrays:
            continue
        high = token_limit(tokenizer, name)
        low_found, high_found = arrays[name].min(), arrays[name].max()
        if low_found < 0 or (high is not None and high_found >= high):
            allowed = f"0..{high - 1}" if high is not None else ">= 0"
            what = "token ids" if field == "ids" else f"{field} values"
            raise InputError(
                f"input {name} holds {what} {low_found}..{high_found}; allowed {allowed}",
                hint="encode text with this artifact's tokenizer (predict) or check the ids",
            )


def token_limit(tokenizer: TokenizerSpec, name: str) -> int | None:
    """Values of the tokenizer-fed input `name` lie in 0..limit-1 (None: no known upper limit)."""
    field = tokenizer.feeds.get(name)
    return {"ids": tokenizer.vocab_size, "attention_mask": 2, "type_ids": tokenizer.type_vocab_size}.get(field)
