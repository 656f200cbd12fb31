"""Where the prunable parts of a transformer encoder live, found from its module structure, and
removing heads and FFN neurons.

A layer is prunable when one module holds the attention's Q, K and V projections (Linear layers
named query/key/value, q/k/v, q_lin…, q_proj…, query_proj…), and the nearest module around it that
holds the FFN ends with: the attention's output projection, a Linear from the hidden size and the
Linear back to it, both outside the Q/K/V module. Every other Linear of the layer must be another
head-sliced projection of the same shape (DeBERTa's positional projections, Longformer's global
ones). BERT, RoBERTa, ELECTRA, DistilBERT, DeBERTa-v2, MPNet, ALBERT (one shared layer, pruned once
for all) and others have this shape; fused Q/K/V (ModernBERT, DeBERTa v1), gated FFNs, bottlenecks
and convolutions do not, and are refused with the reason. transformers 5 removed `prune_heads`;
`prune_linear_layer` remains."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import CompileError

ROLES = {
    "q": ("query", "q", "q_lin", "q_proj", "query_proj", "q_head"),
    "k": ("key", "k", "k_lin", "k_proj", "key_proj", "k_head"),
    "v": ("value", "v", "v_lin", "v_proj", "value_proj", "v_head"),
}
HEAD_COUNTS = ("num_attention_heads", "n_heads", "num_heads")
HEAD_SIZES = ("attention_head_size", "head_dim", "dim_per_head", "head_size")
_HINT = "head/FFN pruning needs separate Q/K/V projections and a plain two-Linear FFN in each layer"


@dataclass(frozen=True)
class Shape:
    """Per-block attention heads and FFN widths."""

    heads: tuple[int, ...]
    widths: tuple[int, ...]


@dataclass
class Block:
    """One layer's prunable groups (ALBERT: one block serves every layer; `uses` counts them)."""

    holder: object  # the module holding Q/K/V: carries the head count
    projections: list[tuple[object, str]]  # (parent, attribute) of Linears sliced by head along outputs
    output: tuple[object, str]  # the attention output projection: sliced by head along inputs
    up: tuple[object, str]
    down: tuple[object, str]
    head_size: int
    uses: int = 1
    segments: int = 1  # head-sliced blocks in each projection's output: 3 for a fused QKV Linear (timm)

    def linear(self, ref: tuple[object, str]):
        return getattr(*ref)

    @property
    def heads(self) -> int:
        return self.linear(self.projections[0]).out_features // self.head_size // self.segments

    @property
    def width(self) -> int:
        return self.linear(self.up).out_features


def encoder_blocks(model) -> list[Block]:
    """The model's prunable layers in order, or a CompileError saying why it has none."""
    own = getattr(model, "prunable_blocks", None)  # an adapter that finds its own (timm_vit.py)
    if own is not None:
        return own()
    model_type = getattr(model.config, "model_type", type(model).__name__)
    base = getattr(model, "base_model", model)
    modules = dict(base.named_modules())
    holders = [(name, module) for name, module in modules.items() if _qkv(module)]
    if not holders:
        raise CompileError(
            f"structured pruning does not know the {model_type!r} architecture: it has no separate "
            "Q/K/V Linear projections (fused or convolutional attention)",
            hint=f"{_HINT}; CNNs (Conv2d/BatchNorm2d modules) take --prune-channels",
        )
    blocks = [_block(name, holder, modules, {id(m) for _, m in holders}, model, model_type) for name, holder in holders]
    layers = getattr(model.config, "num_hidden_layers", len(blocks))
    if layers % len(blocks):
        raise CompileError(
            f"structured pruning cannot map {len(blocks)} distinct layers onto {layers} in {model_type!r}", hint=_HINT
        )
    for block in blocks:
        block.uses = layers // len(blocks)
    return blocks


def _qkv(module) -> dict | None:
    import torch

    children = {name: child for name, child in module.named_children() if isinstance(child, torch.nn.Linear)}
    found = {role: next((n for n in names if n in children), None) for role, names in ROLES.items()}
    return found if all(found.values()) else None


def _block(name: str, holder, modules: dict, holder_ids: set, model, model_type: str) -> Block:
    import torch

    hidden = model.config.hidden_size
    q = getattr(holder, _qkv(holder)["q"])
    size = next(
        (getattr(holder, a) for a in HEAD_SIZES if isinstance(getattr(holder, a, None), int)),
        hidden // model.config.num_attention_heads,
    )

    def refuse(why: str) -> CompileError:
        return CompileError(f"structured pruning cannot prune {model_type!r} ({name}): {why}", hint=_HINT)

    parts = name.split(".")
    for depth in range(len(parts) - 1, -1, -1):  # from the holder's parent outwards
        scope = modules[".".join(parts[:depth])]
        linears = [(n, m) for n, m in scope.named_modules() if isinstance(m, torch.nn.Linear)]
        if any(id(m) in holder_ids and m is not holder for _, m in scope.named_modules()):
            raise refuse("its attention and FFN do not sit together in one layer module")
        inside = {id(m) for m in holder.modules()}
        if (
            len(linears) < 5
            or any(id(m) in inside for _, m in linears[-2:])
            or not _is_ffn(linears[-2][1], linears[-1][1], hidden)
        ):
            continue
        *attention, (o_name, o), (up_name, _), (down_name, _) = linears
        if o.in_features != q.out_features or o.out_features != hidden:
            raise refuse(f"{o_name} is not an attention output projection")
        odd = [n for n, m in attention if (m.in_features, m.out_features) != (q.in_features, q.out_features)]
        if odd:
            raise refuse(
                f"{', '.join(odd)} is neither a head-sliced projection nor part of a plain FFN "
                "(gated FFN, bottleneck or convolution)"
            )
        if q.out_features % size:
            raise refuse(f"Q's width {q.out_features} is not a multiple of the head size {size}")
        return Block(
            holder,
            [_ref(scope, n) for n, _ in attention],
            _ref(scope, o_name),
            _ref(scope, up_name),
            _ref(scope, down_name),
            size,
        )
    raise refuse("no plain two-Linear FFN (hidden -> wider -> hidden) follows its attention")


def _is_ffn(up, down, hidden: int) -> bool:
    return up.in_features == hidden and down.in_features == up.out_features and down.out_features == hidden


def _ref(scope, dotted: str) -> tuple[object, str]:
    *path, attribute = dotted.split(".")
    parent = scope
    for part in path:
        parent = getattr(parent, part)
    return parent, attribute


def encoder_layers(model) -> list[Block]:
    return encoder_blocks(model)


def head_size(model) -> int:
    return encoder_blocks(model)[0].head_size


def shape_of(model) -> Shape:
    blocks = encoder_blocks(model)
    return Shape(heads=tuple(b.heads for b in blocks), widths=tuple(b.width for b in blocks))


def keep_heads(block: Block, keep: list[int], size: int | None = None) -> None:
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    size = size or block.head_size
    index = torch.tensor([h * size + i for h in sorted(keep) for i in range(size)], dtype=torch.long)
    width = block.heads * size  # one segment's rows before the cut
    rows = torch.cat([index + segment * width for segment in range(block.segments)])
    for parent, attribute in block.projections:
        setattr(parent, attribute, prune_linear_layer(getattr(parent, attribute), rows, dim=0))
    parent, attribute = block.output
    setattr(parent, attribute, prune_linear_layer(getattr(parent, attribute), index, dim=1))
    for name in HEAD_COUNTS:
        if isinstance(getattr(block.holder, name, None), int):
            setattr(block.holder, name, len(keep))
    for name in ("all_head_size", "attn_dim"):  # transformers' and timm's name for heads x head size
        if isinstance(getattr(block.holder, name, None), int):
            setattr(block.holder, name, len(keep) * size)


def keep_neurons(block: Block, keep: list[int]) -> None:
    import torch
    from transformers.pytorch_utils import prune_linear_layer

    index = torch.tensor(sorted(keep), dtype=torch.long)
    for (parent, attribute), dim in ((block.up, 0), (block.down, 1)):
        setattr(parent, attribute, prune_linear_layer(getattr(parent, attribute), index, dim=dim))


def reshape_to(model, shape: Shape) -> None:
    """Cut a freshly built model to `shape` (first heads/neurons; the saved weights are loaded after)."""
    for block, heads, width in zip(encoder_blocks(model), shape.heads, shape.widths):
        keep_heads(block, list(range(heads)))
        keep_neurons(block, list(range(width)))
