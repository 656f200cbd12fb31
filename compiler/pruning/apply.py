"""Rewriting the model: cut every layer to the plan's kept heads and neurons."""
from __future__ import annotations

from .plan import KeepPlan
from .structure import encoder_layers, head_size, keep_heads, keep_neurons


def apply_plan(model, plan: KeepPlan) -> None:
    size = head_size(model)
    for layer, heads, neurons in zip(encoder_layers(model), plan.heads, plan.neurons):
        if len(heads) < layer.attention.self.query.out_features // size:
            keep_heads(layer, list(heads), size)
        if len(neurons) < layer.intermediate.dense.out_features:
            keep_neurons(layer, list(neurons))
