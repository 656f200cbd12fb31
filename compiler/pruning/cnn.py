"""Conv-channel pruning of CNNs (Conv/BatchNorm nets) with Torch-Pruning's dependency graph, which
fixes up every layer that consumes a pruned channel (BatchNorm, the next conv, residual adds,
the classifier's inputs). Importance is the L2 magnitude of each channel group; the classifier's
outputs are never pruned."""

from __future__ import annotations

import copy
from typing import Any

from ..errors import CompileError
from .config import PruneConfig


def prune_channels(module, example_inputs: Any, config: PruneConfig):
    """(a pruned copy of `module`, the report)."""
    import torch

    try:
        import torch_pruning as tp
    except ImportError:
        raise CompileError(
            "conv-channel pruning needs torch-pruning", hint="pip install 'edgekiln[compiler]'"
        ) from None

    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    if not convs:
        raise CompileError(
            f"--prune-channels prunes Conv2d channels; {type(module).__name__} has no Conv2d",
            hint="transformer encoders take --prune-heads/--prune-ffn/--prune-flops",
        )
    model = copy.deepcopy(module).eval()
    example = tuple(example_inputs) if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
    ops_before, params_before = tp.utils.count_ops_and_params(model, example)
    channels_before = {name: m.out_channels for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}
    ignored = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    try:
        pruner = tp.pruner.MetaPruner(
            model,
            example,
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=config.channels,
            ignored_layers=ignored,
            round_to=config.multiple_of if config.multiple_of > 1 else None,
        )
        pruner.step()
    except Exception as exc:  # Torch-Pruning cannot trace some dynamic control flow
        raise CompileError(
            f"Torch-Pruning could not prune {type(module).__name__}: {exc}",
            hint="structured channel pruning needs a traceable Conv/BatchNorm network",
        ) from None
    ops_after, params_after = tp.utils.count_ops_and_params(model, example)
    layers = [
        {"layer": name, "channels": [channels_before[name], m.out_channels]}
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    report = {
        "flops_reduction": 1 - ops_after / ops_before,
        "accuracy_drop": None,
        "kind": "conv-channels",
        "macs": {"before": int(ops_before), "after": int(ops_after)},
        "parameters": {"before": int(params_before), "after": int(params_after)},
        "layers": layers,
        "config": config.model_dump(mode="json"),
    }
    return model.eval(), report
