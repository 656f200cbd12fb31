"""Importance of each head and FFN neuron. Statistics only: nothing here changes the model.

Taylor: per group (a head's Q/K/V rows and output columns; a neuron's FFN row and column), the
first-order estimate of the loss change when the group is removed, (sum of w * dL/dw)^2, summed
over calibration batches (Molchanov et al., 2019). The label-free variant uses the model's own
predictions as labels. Magnitude: the L2 norm of the group's weights."""
from __future__ import annotations

from typing import Iterable

import numpy as np

from .config import Importance
from .structure import encoder_layers, head_size


def importance_scores(model, batches: Iterable[tuple[dict, np.ndarray | None]], kind: Importance):
    """(per-layer head scores, per-layer neuron scores), numpy arrays."""
    if kind is Importance.MAGNITUDE:
        return _magnitude(model)
    return _taylor(model, batches, label_free=kind is Importance.TAYLOR_LABEL_FREE)


def _groups(layer, size: int):
    """(head contributions, neuron contributions) of `w * grad` for one layer."""
    attention = layer.attention
    heads = 0
    for linear in (attention.self.query, attention.self.key, attention.self.value):
        rows = (linear.weight * linear.weight.grad).sum(dim=1) + linear.bias * linear.bias.grad
        heads = heads + rows.view(-1, size).sum(dim=1)
    out = attention.output.dense
    heads = heads + (out.weight * out.weight.grad).sum(dim=0).view(-1, size).sum(dim=1)
    up, down = layer.intermediate.dense, layer.output.dense
    neurons = (up.weight * up.weight.grad).sum(dim=1) + up.bias * up.bias.grad + \
        (down.weight * down.weight.grad).sum(dim=0)
    return heads, neurons


def _taylor(model, batches, *, label_free: bool):
    import torch

    layers, size = encoder_layers(model), head_size(model)
    heads = [np.zeros(layer.attention.self.query.out_features // size) for layer in layers]
    neurons = [np.zeros(layer.intermediate.dense.out_features) for layer in layers]
    model.eval()  # no dropout: the scores describe the deployed model
    for feeds, labels in batches:
        inputs = {name: torch.from_numpy(array) for name, array in feeds.items()}
        logits = model(**inputs).logits
        target = logits.argmax(dim=-1).detach() if label_free or labels is None else torch.from_numpy(labels)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                 ignore_index=-100)
        model.zero_grad(set_to_none=False)
        loss.backward()
        with torch.no_grad():
            for i, layer in enumerate(layers):
                head, neuron = _groups(layer, size)
                heads[i] += head.double().pow(2).numpy()
                neurons[i] += neuron.double().pow(2).numpy()
    model.zero_grad(set_to_none=True)
    return heads, neurons


def _magnitude(model):
    import torch

    layers, size = encoder_layers(model), head_size(model)
    heads, neurons = [], []
    with torch.no_grad():
        for layer in layers:
            attention = layer.attention
            rows = sum(lin.weight.pow(2).sum(dim=1) for lin in (attention.self.query, attention.self.key,
                                                                 attention.self.value))
            cols = attention.output.dense.weight.pow(2).sum(dim=0)
            heads.append((rows + cols).view(-1, size).sum(dim=1).sqrt().numpy())
            up, down = layer.intermediate.dense, layer.output.dense
            neurons.append((up.weight.pow(2).sum(dim=1) + down.weight.pow(2).sum(dim=0)).sqrt().numpy())
    return heads, neurons
