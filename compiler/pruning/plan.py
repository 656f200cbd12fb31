"""Which heads and neurons to keep: scores normalised per layer, ranked across layers (so widths
may differ per layer), never fewer than one head per layer, FFN widths rounded to the target's
multiple. A FLOPs target is met by searching the ratio applied to both."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import CompileError
from .flops import encoder_flops
from .structure import Shape


@dataclass(frozen=True)
class KeepPlan:
    heads: tuple[tuple[int, ...], ...]  # per layer, indices of the heads kept
    neurons: tuple[tuple[int, ...], ...]

    @property
    def shape(self) -> Shape:
        return Shape(tuple(len(h) for h in self.heads), tuple(len(n) for n in self.neurons))


def plan_ratios(head_scores, neuron_scores, heads: float, ffn: float, multiple: int) -> KeepPlan:
    kept_heads = _keep(head_scores, heads, minimum=1, multiple=1)
    kept_neurons = _keep(neuron_scores, ffn, minimum=multiple, multiple=multiple)
    return KeepPlan(kept_heads, kept_neurons)


def most_removable(full: Shape, multiple: int, dims: tuple[int, int, int], heads_fixed: bool = False) -> float:
    """The largest FLOPs fraction any plan can remove: one head (all, when they are fixed) and
    `multiple` neurons per layer."""
    hidden, size, sequence = dims
    least = Shape(
        full.heads if heads_fixed else tuple(1 for _ in full.heads), tuple(min(multiple, w) for w in full.widths)
    )
    return 1 - encoder_flops(least, hidden, size, sequence) / encoder_flops(full, hidden, size, sequence)


def check_flops_target(
    full: Shape, target: float, multiple: int, dims: tuple[int, int, int], heads_fixed: bool = False
) -> None:
    most = most_removable(full, multiple, dims, heads_fixed)
    if most < target:
        heads = "every head (this model's heads cannot be removed)" if heads_fixed else "one head"
        raise CompileError(
            f"--prune-flops {target} cannot be met: keeping {heads} and {multiple} FFN neurons per "
            f"layer removes at most {most:.1%} of the encoder FLOPs",
            hint=f"ask for at most {most:.2f}",
        )


def plan_flops(
    head_scores, neuron_scores, target: float, multiple: int, dims: tuple[int, int, int], heads_fixed: bool = False
) -> KeepPlan:
    """The smallest common ratio whose plan removes at least `target` of the encoder FLOPs."""
    hidden, size, sequence = dims
    full = encoder_flops(
        Shape(tuple(len(s) for s in head_scores), tuple(len(s) for s in neuron_scores)), hidden, size, sequence
    )

    def reduction(ratio: float) -> float:
        return (
            1
            - encoder_flops(
                plan_ratios(head_scores, neuron_scores, 0.0 if heads_fixed else ratio, ratio, multiple).shape,
                hidden,
                size,
                sequence,
            )
            / full
        )

    check_flops_target(
        Shape(tuple(len(s) for s in head_scores), tuple(len(s) for s in neuron_scores)),
        target,
        multiple,
        dims,
        heads_fixed,
    )
    low, high = 0.0, 0.999
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (middle, high) if reduction(middle) < target else (low, middle)
    return plan_ratios(head_scores, neuron_scores, 0.0 if heads_fixed else high, high, multiple)


def _keep(scores: list[np.ndarray], ratio: float, *, minimum: int, multiple: int) -> tuple[tuple[int, ...], ...]:
    normalised = [s / (np.linalg.norm(s) or 1.0) for s in scores]
    flat = np.concatenate(normalised)
    remove = int(round(ratio * flat.size))
    threshold = np.sort(flat)[remove - 1] if remove else -np.inf
    kept = []
    for layer_scores in normalised:
        count = int((layer_scores > threshold).sum())
        count = _round(max(count, minimum), multiple, len(layer_scores))
        order = np.argsort(-layer_scores, kind="stable")
        kept.append(tuple(sorted(int(i) for i in order[:count])))
    return tuple(kept)


def _round(count: int, multiple: int, limit: int) -> int:
    rounded = int(round(count / multiple)) * multiple
    return min(max(rounded, multiple), limit)
