"""Argument types shared by the commands."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import TypeVar

Number = TypeVar("Number", int, float)


def _positive(cast: Callable[[str], Number], what: str) -> Callable[[str], Number]:
    def parse(text: str) -> Number:
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value <= 0:  # nan and inf parse as floats
            raise argparse.ArgumentTypeError(f"expected a positive {what}, found {text!r}")
        return value

    return parse


positive_int = _positive(int, "integer")
positive_float = _positive(float, "number")


def bounded_float(low: float, high: float, unit: str) -> Callable[[str], float]:
    """A finite number in [low, high] (`unit` names it in the error)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:  # nan fails too
            raise argparse.ArgumentTypeError(f"expected {unit} from {low:g} to {high:g}, found {text!r}")
        return value

    return parse


def unit_float(text: str) -> float:
    """A fraction in (0, 1]."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1], found {text!r}")
    return value


def fraction(text: str) -> float:
    """A fraction in (0, 1), both ends excluded."""
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1 (both excluded), found {text!r}")
    return value


def fraction_list(text: str) -> tuple[float, ...]:
    """Comma-separated fractions in (0, 1), e.g. 0.4,0.6."""
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions like 0.4,0.6, found {text!r}") from None
    if not values or any(not 0 < value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"expected fractions between 0 and 1, found {text!r}")
    return values


def int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(part) for part in text.split(","))  # an empty item ("1,,2") is a typo: refused
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,8, found {text!r}") from None
    if not values or any(value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, found {text!r}")
    return values


def key_value(text: str) -> tuple[str, object]:
    """KEY=VALUE, the value read as JSON when it parses (numbers, lists, booleans), else kept as text."""
    import json

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, found {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def name_list(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names like onnxruntime,openvino, found {text!r}")
    return names


def given_flags(*flags: tuple[str, object, object]) -> list[str]:
    """The names of the (flag, value, default) triples whose value is not the default: what the user gave."""
    return [flag for flag, value, default in flags if value != default]
