"""Where the prunable parts of a BERT-family encoder live, and removing heads and FFN neurons.

transformers 5 removed `prune_heads`; `prune_linear_layer` remains. BERT's self-attention reshapes
with -1 heads, so a layer runs with fewer heads once its projections are cut."""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import CompileError

SUPPORTED = ("bert", "roberta", "xlm-roberta", "electra", "camembert")


@dataclass(frozen=True)
class Shape:
    """Per-layer attention heads and FFN widths."""

    heads: tuple[int, ...]
    widths: tuple[int, ...]


def encoder_layers(model) -> list:
    model_type = getattr(model.config, "model_type", None)
    base = getattr(model, "base_model", model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if model_type not in SUPPORTED or layers is None:
        raise CompileError(f"structured pruning does not know the {model_type!r} architecture",
                           hint=f"supported encoders: {', '.join(SUPPORTED)}; CNNs (Conv2d/BatchNorm2d modules) "
                                "take --prune-channels")
    return list(layers)


def head_size(model) -> int:
    return model.config.hidden_size // model.config.num_attention_heads


def shape_of(model) -> Shape:
    layers = encoder_layers(model)
    size = head_size(model)
    return Shape(heads=tuple(layer.attention.self.query.out_features // size for layer in layers),
                 widths=tuple(layer.intermediate.dense.out_features for layer in layers))


def keep_heads(layer, keep: list[int], size: int) -> None:
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    attention = layer.attention
    index = torch.tensor([h * size + i for h in sorted(keep) for i in range(size)], dtype=torch.long)
    for name in ("query", "key", "value"):
        setattr(attention.self, name, prune_linear_layer(getattr(attention.self, name), index, dim=0))
    attention.output.dense = prune_linear_layer(attention.output.dense, index, dim=1)
    attention.self.num_attention_heads = len(keep)
    attention.self.all_head_size = len(keep) * size


def keep_neurons(layer, keep: list[int]) -> None:
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    index = torch.tensor(sorted(keep), dtype=torch.long)
    layer.intermediate.dense = prune_linear_layer(layer.intermediate.dense, index, dim=0)
    layer.output.dense = prune_linear_layer(layer.output.dense, index, dim=1)


def reshape_to(model, shape: Shape) -> None:
    """Cut a freshly built model to `shape` (first heads/neurons; the saved weights are loaded after)."""
    size = head_size(model)
    for layer, heads, width in zip(encoder_layers(model), shape.heads, shape.widths):
        keep_heads(layer, list(range(heads)), size)
        keep_neurons(layer, list(range(width)))
