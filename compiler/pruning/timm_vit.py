"""timm vision transformers (ViT, DeiT, ...: `blocks` of timm's Attention, one fused `qkv` Linear, and
an Mlp) pruned with the ViT machinery of vit.py: an adapter gives the model the shape that machinery
reads (a config, a `pixel_values` forward returning logits, Blocks whose qkv Linear holds three
head-sliced segments). Gated attention, a norm over the heads' output, or an MLP that is not
fc1 -> act -> fc2 are refused with the reason; the cut is checked against the model with the removed
groups zeroed, as for Hugging Face ViTs."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace

import torch

from ..errors import CompileError
from ..sources.wrappers import ImageLogits
from .structure import Block

_HINT = "compile it without --prune-flops, or prune a timm ViT/DeiT with plain attention and MLP blocks"


def is_timm_vit(module) -> bool:
    """A timm model with transformer `blocks` whose attention has one fused `qkv` Linear."""
    blocks = getattr(module, "blocks", None)
    return (
        hasattr(module, "patch_embed")
        and isinstance(getattr(module, "embed_dim", None), int)
        and isinstance(blocks, torch.nn.Sequential)
        and len(blocks) > 0
        and all(isinstance(getattr(getattr(b, "attn", None), "qkv", None), torch.nn.Linear) for b in blocks)
        and all(isinstance(getattr(b.attn, "num_heads", None), int) for b in blocks)
    )


class _Output(tuple):
    """What the machinery reads of a forward: `.logits`, or item 0."""

    @property
    def logits(self) -> torch.Tensor:
        return self[0]


class TimmViT(torch.nn.Module):
    """The adapter, around the timm model itself (cutting the adapter cuts the model)."""

    def __init__(self, vit: torch.nn.Module) -> None:
        super().__init__()
        self.vit = vit
        self.config = SimpleNamespace(
            model_type=f"timm {type(vit).__name__}",
            hidden_size=int(vit.embed_dim),
            num_attention_heads=int(vit.blocks[0].attn.num_heads),
            num_hidden_layers=len(vit.blocks),
        )

    def forward(self, pixel_values: torch.Tensor) -> _Output:
        return _Output((self.vit(pixel_values),))

    def tokens(self, pixels: torch.Tensor) -> int:
        """Patches of `pixels`' size plus the prefix (class, distillation, register) tokens."""
        embed = self.vit.patch_embed
        if hasattr(embed, "dynamic_feat_size"):
            rows, columns = embed.dynamic_feat_size(tuple(pixels.shape[-2:]))
            patches = rows * columns
        else:
            patches = embed.num_patches
        return int(patches) + int(getattr(self.vit, "num_prefix_tokens", 1))

    def prunable_blocks(self) -> list[Block]:
        return [_block(index, block, self.config.hidden_size) for index, block in enumerate(self.vit.blocks)]


def prune_timm_vit(module, example: tuple, batches, config):
    """vit.prune_vit on the timm model `module`, cut in place; the result's model is `module` itself."""
    from .vit import prune_vit

    searched, layers, encoder = prune_vit(ImageLogits(TimmViT(module)), example, batches, config)
    return replace(searched, model=module.eval()), layers, encoder


def _block(index: int, block, hidden: int) -> Block:
    attn, mlp = block.attn, getattr(block, "mlp", None)

    def refuse(why: str) -> CompileError:
        return CompileError(f"--prune-flops cannot cut timm block {index}: {why}", hint=_HINT)

    size, heads = getattr(attn, "head_dim", None), getattr(attn, "num_heads", None)
    if not isinstance(size, int) or not isinstance(heads, int) or not isinstance(getattr(attn, "attn_dim", None), int):
        raise refuse(f"its attention ({type(attn).__name__}) has no num_heads/head_dim/attn_dim to rewrite")
    if attn.qkv.out_features != 3 * heads * size or not isinstance(getattr(attn, "proj", None), torch.nn.Linear):
        raise refuse(f"its attention ({type(attn).__name__}) is not one qkv Linear of 3 x heads x head_dim and a proj")
    if getattr(attn, "gate", None) is not None or not isinstance(
        getattr(attn, "norm", torch.nn.Identity()), torch.nn.Identity
    ):
        raise refuse("its attention output is gated or normalised over all heads")
    fc1, fc2 = getattr(mlp, "fc1", None), getattr(mlp, "fc2", None)
    plain = isinstance(fc1, torch.nn.Linear) and isinstance(fc2, torch.nn.Linear)
    if not plain or fc1.in_features != hidden or fc2.in_features != fc1.out_features or fc2.out_features != hidden:
        raise refuse(f"its MLP ({type(mlp).__name__}) is not fc1 (hidden -> wider) and fc2 back")
    if not isinstance(getattr(mlp, "norm", torch.nn.Identity()), torch.nn.Identity):
        raise refuse("its MLP normalises the hidden layer")
    return Block(attn, [(attn, "qkv")], (attn, "proj"), (mlp, "fc1"), (mlp, "fc2"), size, segments=3)
