"""Multiply-add counts of an encoder per sequence, by layer shape: what pruning is measured against."""

from __future__ import annotations

from .structure import Shape


def encoder_flops(shape: Shape, hidden: int, head_size: int, sequence: int) -> int:
    """FLOPs (2 x multiply-adds) of the encoder layers for one sequence of `sequence` tokens."""
    total = 0
    for heads, width in zip(shape.heads, shape.widths):
        inner = heads * head_size
        projections = 4 * hidden * inner  # Q, K, V in; output projection back
        attention = 2 * sequence * inner  # scores and weighted sum, per token
        ffn = 2 * hidden * width
        total += 2 * sequence * (projections + ffn) + 2 * sequence * attention
    return total


def encoder_parameters(shape: Shape, hidden: int, head_size: int) -> int:
    total = 0
    for heads, width in zip(shape.heads, shape.widths):
        inner = heads * head_size
        total += 4 * hidden * inner + 3 * inner + hidden + 2 * hidden * width + width + hidden
    return total
