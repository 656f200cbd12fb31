"""Vision transformers (ViT, DeiT …): attention heads and MLP neurons removed to an encoder-FLOPs target,
with the text encoders' machinery: the layers found from the module structure (structure.py), Taylor or
magnitude scores (importance.py) on image batches, the plan (plan.py) at the model's token count
(patches + class/distillation tokens), the cut checked against the model with those groups zeroed on
real images (apply.py). Torch-Pruning's count_ops measures the whole model before and after."""

from __future__ import annotations

from .cnn_search import Searched, torch_pruning
from .config import Importance, PruneConfig
from .flops import encoder_flops, encoder_parameters
from .importance import importance_scores
from .plan import plan_flops
from .structure import encoder_blocks, head_size, shape_of


def is_vision_transformer(module) -> bool:
    """Whether the wrapped Hugging Face model has encoder layers edgekiln can cut (heads and MLP)."""
    from ..errors import CompileError

    inner = getattr(module, "model", None)
    if inner is None or not hasattr(inner, "config"):
        return False
    try:
        encoder_blocks(inner)
    except CompileError:
        return False
    return True


def tokens(model, pixels) -> int:
    """Sequence length the encoder runs at: patches plus the class (and distillation) tokens."""
    import torch

    if hasattr(model, "tokens"):  # an adapter that counts its own (timm_vit.py)
        return model.tokens(pixels)
    with torch.no_grad():
        return int(model.base_model.embeddings(pixels[:1]).shape[1])


def prune_vit(module, example: tuple, batches, config: PruneConfig) -> tuple[Searched, list[dict], dict]:
    """Cut `module` (an ImageLogits around a transformers ViT) in place; (the result, per-layer shapes,
    the encoder FLOPs (at the model's token count) and parameters before and after)."""
    from .apply import apply_plan

    tp = torch_pruning()
    model = module.model
    before = tp.utils.count_ops_and_params(module, example)
    full = shape_of(model)
    dims = (model.config.hidden_size, head_size(model), tokens(model, example[0]))
    scored = [] if config.importance is Importance.MAGNITUDE else [({"pixel_values": p}, ids) for p, ids in batches]
    scores = importance_scores(model, scored, config.importance)
    plan = plan_flops(*scores, config.flops, config.multiple_of or 1, dims)
    apply_plan(model, plan, inputs={"pixel_values": example[0]})
    after = tp.utils.count_ops_and_params(module, example)
    layers = [
        {"layer": i, "heads": [h0, h1], "ffn": [w0, w1], "kept_heads": list(kept)}
        for i, (h0, h1, w0, w1, kept) in enumerate(
            zip(full.heads, plan.shape.heads, full.widths, plan.shape.widths, plan.heads)
        )
    ]
    replay = {"heads": [list(kept) for kept in plan.heads], "neurons": [list(kept) for kept in plan.neurons]}
    searched = Searched(module.eval(), None, (before[0], after[0]), (before[1], after[1]), 1, replay)
    flops = {"before": encoder_flops(full, *dims), "after": encoder_flops(plan.shape, *dims), "sequence": dims[2]}
    params = {"before": encoder_parameters(full, *dims[:2]), "after": encoder_parameters(plan.shape, *dims[:2])}
    return searched, layers, {"encoder_flops": flops, "encoder_parameters": params}
