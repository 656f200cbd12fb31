"""The per-layer fallback search: layers back to float 1, 2, 4, … at a time, never all of them (that
is the float model, which must not ship labelled int8)."""

from __future__ import annotations

from dataclasses import dataclass

from edgekiln.compiler.quantization.fallback import within_budget


@dataclass
class Attempt:
    exclude: tuple[str, ...]
    drop: float


def _search(layers: int, fits_from: int):
    built = []

    def build(exclude):
        built.append(exclude)
        return Attempt(exclude, 0.0 if len(exclude) >= fits_from else 10.0)

    attempt, steps = within_budget(
        build, lambda first: [f"n{i}" for i in range(layers)], lambda a: a.drop <= 1.0, lambda a: None
    )
    return attempt, steps, built


def test_the_search_stops_at_the_first_attempt_that_fits():
    attempt, steps, _ = _search(layers=10, fits_from=3)
    assert [s["excluded"] for s in steps] == [0, 1, 2, 4] and len(attempt.exclude) == 4


def test_every_layer_in_float_is_never_an_attempt():
    attempt, steps, built = _search(layers=5, fits_from=5)  # only the float model would fit
    assert max(len(exclude) for exclude in built) == 4
    assert [s["excluded"] for s in steps] == [0, 1, 2, 4] and attempt.drop == 10.0  # the caller refuses it


def test_a_single_layer_model_has_no_fallback():
    attempt, steps, built = _search(layers=1, fits_from=1)
    assert built == [()] and steps == [{"excluded": 0, "accuracy_drop": 10.0}]
