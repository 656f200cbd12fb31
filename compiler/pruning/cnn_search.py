"""Conv-channel pruning to a FLOPs target with Torch-Pruning's dependency graph: channel groups are
ranked across layers (global pruning, at most MAX_LAYER_RATIO of any layer) by Taylor importance
(|w * dL/dw| of each group, the gradient summed over labelled, or model-labelled, images) or by L2
magnitude, and the global channel ratio is searched (a coarse ascending grid, then bisection) until the measured FLOPs drop (Torch-Pruning's
count_ops, before and after) reaches the target. The classifier's outputs are never pruned."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

from ..errors import CompileError
from .config import Importance

MAX_LAYER_RATIO = 0.9  # no layer loses more than this fraction of its channels
GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, MAX_LAYER_RATIO)  # global ratios tried first, in order
STEPS = 6  # then bisection steps between the last two
SLACK = 0.01  # a drop within [target, target + SLACK] ends the search early


@dataclass(frozen=True)
class Searched:
    model: object
    ratio: float
    ops: tuple[float, float]  # multiply-accumulates before, after
    params: tuple[float, float]
    trials: int
    replay: object = None  # what rebuilds the cut on a fresh copy: conv groups, or the ViT's KeepPlan


def torch_pruning():
    try:
        import torch_pruning as tp
    except ImportError:
        raise CompileError(
            "conv-channel pruning needs torch-pruning", hint="pip install 'edgekiln[compiler]'"
        ) from None
    return tp


def accumulate_gradients(module, batches, *, label_free: bool) -> int:
    """Sum dL/dw over the batches into the parameters' .grad (for Taylor importance); returns images seen."""
    import torch

    module.eval()  # the scores describe the deployed model: no batch statistics, no dropout
    module.zero_grad(set_to_none=True)
    seen = 0
    for pixels, ids in batches:
        logits = module(torch.from_numpy(pixels))
        target = logits.argmax(dim=-1).detach() if label_free or ids is None else torch.from_numpy(ids)
        torch.nn.functional.cross_entropy(logits, target, reduction="sum").backward()
        seen += len(pixels)
    if not seen:
        raise CompileError("no images to score the channels with", hint="pass --data FOLDER with images in it")
    return seen


def output_layer(module, classes: int):
    """The layer producing the logits: the last Linear (or, in an all-conv net, Conv2d) with `classes` outputs."""
    import torch

    linear = conv = None
    for layer in module.modules():
        if isinstance(layer, torch.nn.Linear) and layer.out_features == classes:
            linear = layer
        elif isinstance(layer, torch.nn.Conv2d) and layer.out_channels == classes:
            conv = layer
    return linear or conv


def prune_to_flops(module, example, importance: Importance, target: float, classes: int, round_to: int) -> Searched:
    """The smallest global channel ratio whose pruned copy removes at least `target` of the FLOPs."""
    tp = torch_pruning()
    before = tp.utils.count_ops_and_params(module, example)

    def trial(ratio: float):
        model = _copy_with_grads(module)
        replay = _prune(model, example, importance, ratio, classes, round_to)
        ops, params = tp.utils.count_ops_and_params(model, example)
        return model, 1 - ops / before[0], (ops, params), replay

    low, best, most, trials = 0.0, None, 0.0, 0
    for high in GRID:  # ascending: channel rounding can make larger ratios prune less, so no bisection yet
        got = trial(high)
        trials, most = trials + 1, max(most, got[1])
        if got[1] >= target:
            best = (got, high)
            break
        low = high
    if best is None:
        raise CompileError(
            f"--prune-flops {target} cannot be met: removing up to {MAX_LAYER_RATIO:.0%} of every conv layer's "
            f"channels (rounded to multiples of {round_to}) removes at most {most:.1%} of the FLOPs",
            hint=f"ask for at most {most:.2f}"
            + (", or prune for a target with a smaller multiple" if round_to > 1 else ""),
        )
    high = best[1]
    for _ in range(STEPS):
        if best[0][1] <= target + SLACK:
            break
        middle = (low + high) / 2
        got = trial(middle)
        trials += 1
        if got[1] >= target:
            best, high = (got, middle), middle
        else:
            low = middle
    (model, _, (ops, params), replay), ratio = best
    return Searched(model.eval(), ratio, (before[0], ops), (before[1], params), trials, replay)


def _copy_with_grads(module):
    model = copy.deepcopy(module)
    for source, copied in zip(module.parameters(), model.parameters()):
        copied.grad = None if source.grad is None else source.grad.clone()
    return model


def _prune(model, example, importance: Importance, ratio: float, classes: int, round_to: int) -> list:
    """Prune `model` in place; returns the groups cut, in order: [module name, out-channels?, indices]."""
    tp = torch_pruning()
    scorer = (
        tp.importance.GroupMagnitudeImportance(p=2)
        if importance is Importance.MAGNITUDE
        else tp.importance.GroupTaylorImportance()
    )
    head = output_layer(model, classes)
    try:
        with warnings.catch_warnings():  # ConvNeXt's layer scales: pruned along their one dimension, as wanted
            warnings.simplefilter("ignore")
            pruner = tp.pruner.MetaPruner(
                model,
                example,
                importance=scorer,
                pruning_ratio=ratio,
                global_pruning=True,
                max_pruning_ratio=MAX_LAYER_RATIO,
                ignored_layers=[head] if head is not None else [],
                round_to=round_to if round_to > 1 else None,
            )
            names = {id(module): name for name, module in model.named_modules()}
            replay = []
            for group in pruner.step(interactive=True):
                dep, idxs = group[0].dep, group[0].idxs
                out = bool(pruner.DG.is_out_channel_pruning_fn(dep.handler))
                replay.append([names[id(dep.target.module)], out, [int(i) for i in idxs]])
                group.prune()
    except Exception as exc:  # Torch-Pruning cannot trace some dynamic control flow
        raise CompileError(
            f"Torch-Pruning could not prune {type(model).__name__}: {type(exc).__name__}: {str(exc)[:200]}",
            hint="structured channel pruning needs a traceable Conv/BatchNorm network",
        ) from None
    model.zero_grad(set_to_none=True)
    return replay


def replay_cut(model, example, replay: list) -> None:
    """Cut a fresh copy of the source model exactly as `_prune` cut the searched one."""
    tp = torch_pruning()
    modules = dict(model.named_modules())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
        for name, out, idxs in replay:
            pruner = graph.get_pruner_of_module(modules[name])
            handler = pruner.prune_out_channels if out else pruner.prune_in_channels
            graph.get_pruning_group(modules[name], handler, idxs).prune()
