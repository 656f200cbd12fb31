"""Rewriting the model: cut every layer to the plan's kept heads and neurons, then check that the
cut model computes what the uncut one computes with those groups zeroed (a layer that reads its
head count from somewhere the rewrite does not reach is refused, never shipped wrong)."""

from __future__ import annotations

import copy

from ..errors import CompileError
from .plan import KeepPlan
from .structure import ROLES, Block, encoder_blocks, keep_heads, keep_neurons

TOLERANCE = 1e-4


def apply_plan(model, plan: KeepPlan, *, check: bool = True, inputs: dict | None = None) -> None:
    """Cut `model` to `plan`; checked on `inputs` (default: two token sequences, one padded)."""
    twin = zeroed_twin(model, plan) if check else None
    for block, heads, neurons in zip(encoder_blocks(model), plan.heads, plan.neurons):
        if len(heads) < block.heads:
            keep_heads(block, list(heads))
        if len(neurons) < block.width:
            keep_neurons(block, list(neurons))
    if twin is not None:
        _compare(model, twin, inputs)


def zeroed_twin(model, plan: KeepPlan):
    """A copy of `model` with the plan's removed heads (their V rows) and FFN neurons zeroed."""
    import torch

    twin = copy.deepcopy(model).eval()
    with torch.no_grad():
        for block, heads, neurons in zip(encoder_blocks(twin), plan.heads, plan.neurons):
            _zero_groups(block, heads, neurons)
    return twin


def _zero_groups(block: Block, heads, neurons) -> None:
    size = block.head_size
    if block.segments == 3:  # a fused QKV: V is its last third
        value, start = block.linear(block.projections[0]), 2 * block.heads * size
    else:
        value, start = next(block.linear(ref) for ref in block.projections if ref[1] in ROLES["v"]), 0
    for head in sorted(set(range(block.heads)) - set(heads)):
        rows = slice(start + head * size, start + (head + 1) * size)
        value.weight[rows] = 0
        if value.bias is not None:
            value.bias[rows] = 0
    up = block.linear(block.up)
    dropped = sorted(set(range(block.width)) - set(neurons))
    up.weight[dropped] = 0
    if up.bias is not None:
        up.bias[dropped] = 0


def _compare(model, twin, inputs: dict | None = None) -> None:
    import torch

    model_type = getattr(model.config, "model_type", type(model).__name__)
    inputs = inputs or _token_inputs(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            got, want = model(**inputs)[0], twin(**inputs)[0]
    except Exception as exc:  # the layer's forward still assumes the old shapes
        raise CompileError(
            f"structured pruning cannot rewrite {model_type!r}: the cut model fails "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})",
            hint="its attention reads the head count from elsewhere; prune another architecture",
        ) from None
    finally:
        model.train(was_training)
    if not torch.allclose(got, want, atol=TOLERANCE, rtol=1e-3):
        error = (got - want).abs().max().item()
        raise CompileError(
            f"structured pruning cannot rewrite {model_type!r}: the cut model differs from the "
            f"model with those heads and neurons zeroed (max error {error:.2g})",
            hint="its attention does not follow the BERT pattern; prune another architecture",
        )


def _token_inputs(model) -> dict:
    import torch

    top = max(6, min(100, model.config.vocab_size))
    ids = torch.randint(5, top, (2, 12), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    return {"input_ids": ids, "attention_mask": mask}


def heads_fixed_reason(model) -> str | None:
    """Why this model's heads cannot be removed layer by layer (MPNet adds one relative-position bias,
    computed once for all heads, in every layer), or None when they can. FFN neurons may still go."""
    blocks = encoder_blocks(model)
    if all(block.heads < 2 for block in blocks):
        return "every layer has a single head"
    trial = KeepPlan(
        tuple(tuple(range(max(1, block.heads - 1))) for block in blocks),
        tuple(tuple(range(block.width)) for block in blocks),
    )
    try:
        apply_plan(copy.deepcopy(model), trial)
    except CompileError as exc:
        return str(exc).split(": ", 1)[-1]
    return None
