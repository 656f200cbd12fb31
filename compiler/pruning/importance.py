"""Importance of each head and FFN neuron. Statistics only: nothing here changes the model.

Taylor: per group (a head's Q/K/V rows and output columns; a neuron's FFN row and column), the
first-order estimate of the loss change when the group is removed, (sum of w * dL/dw)^2, summed
over calibration batches (Molchanov et al., 2019). The label-free variant uses the model's own
predictions as labels. Magnitude: the L2 norm of the group's weights."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from .config import Importance
from .structure import Block, encoder_blocks


def importance_scores(model, batches: Iterable[tuple[dict, np.ndarray | None]], kind: Importance):
    """(per-layer head scores, per-layer neuron scores), numpy arrays."""
    if kind is Importance.MAGNITUDE:
        return _magnitude(model)
    return _taylor(model, batches, label_free=kind is Importance.TAYLOR_LABEL_FREE)


def _rows(linear):
    rows = (linear.weight * linear.weight.grad).sum(dim=1)
    return rows if linear.bias is None else rows + linear.bias * linear.bias.grad


def _groups(block: Block):
    """(head contributions, neuron contributions) of `w * grad` for one layer."""
    size = block.head_size
    heads = 0
    for ref in block.projections:  # a fused QKV's three segments add up per head
        heads = heads + _rows(block.linear(ref)).view(block.segments, -1, size).sum(dim=(0, 2))
    out = block.linear(block.output)
    heads = heads + (out.weight * out.weight.grad).sum(dim=0).view(-1, size).sum(dim=1)
    down = block.linear(block.down)
    neurons = _rows(block.linear(block.up)) + (down.weight * down.weight.grad).sum(dim=0)
    return heads, neurons


def _taylor(model, batches, *, label_free: bool):
    import torch

    blocks = encoder_blocks(model)
    heads = [np.zeros(block.heads) for block in blocks]
    neurons = [np.zeros(block.width) for block in blocks]
    model.eval()  # no dropout: the scores describe the deployed model
    for feeds, labels in batches:
        inputs = {name: torch.from_numpy(array) for name, array in feeds.items()}
        logits = model(**inputs).logits
        target = logits.argmax(dim=-1).detach() if label_free or labels is None else torch.from_numpy(labels)
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=-100
        )
        model.zero_grad(set_to_none=False)
        loss.backward()
        with torch.no_grad():
            for i, block in enumerate(blocks):
                head, neuron = _groups(block)
                heads[i] += head.double().pow(2).numpy()
                neurons[i] += neuron.double().pow(2).numpy()
    model.zero_grad(set_to_none=True)
    return heads, neurons


def _magnitude(model):
    import torch

    heads, neurons = [], []
    with torch.no_grad():
        for block in encoder_blocks(model):
            rows = sum(
                block.linear(ref).weight.pow(2).sum(dim=1).view(block.segments, -1).sum(dim=0)
                for ref in block.projections
            )
            cols = block.linear(block.output).weight.pow(2).sum(dim=0)
            heads.append((rows + cols).view(-1, block.head_size).sum(dim=1).sqrt().numpy())
            up, down = block.linear(block.up), block.linear(block.down)
            neurons.append((up.weight.pow(2).sum(dim=1) + down.weight.pow(2).sum(dim=0)).sqrt().numpy())
    return heads, neurons
