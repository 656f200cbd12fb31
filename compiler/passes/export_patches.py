"""Export-time rewrites of model code that computes a shape with Python numbers of the traced length.

Each patch replaces one method of one transformers class, while an export runs, by code that gives the
same result in eager PyTorch but keeps the sequence length symbolic, so the exported graph takes every
length. A patch is looked up by the classes of the modules the model holds; nothing else changes."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class ExportPatch:
    module: str  # the module that defines the class
    cls: str  # the patch applies when a module of this class is in the model
    target: str  # "Class.method", or a module-level function the class's code calls
    replacement: Callable[..., Callable]  # the original -> what is used while exporting


_PATCHES: list[ExportPatch] = []


def export_patch(module: str, cls: str, target: str):
    """Register `factory(original) -> replacement` for `target` ("Class.method" or a function of
    `module`), applied while exporting a model that holds a `cls` module."""

    def register(factory):
        _PATCHES.append(ExportPatch(module, cls, target, factory))
        return factory

    return register


_REFUSALS: dict[tuple[str, str], Callable[[object], tuple[str, str] | None]] = {}


def export_refusal(module: str, cls: str):
    """Register `check(submodule) -> (reason, fix) or None` for models holding a `cls` module whose code
    cannot take a dynamic sequence length at all (no patch can help: eager PyTorch refuses too)."""

    def register(check):
        _REFUSALS[module, cls] = check
        return check

    return register


def refusal(model) -> tuple[str, str] | None:
    """Why `model` cannot be exported with dynamic axes and what to do instead, or None."""
    for sub in model.modules():
        check = _REFUSALS.get((type(sub).__module__, type(sub).__name__))
        reason = check(sub) if check else None
        if reason:
            return reason
    return None


@contextlib.contextmanager
def patched_for_export(model) -> Iterator[list[str]]:
    """Apply the patches whose class occurs among `model`'s modules; yields their names."""
    present = {(type(m).__module__, type(m).__name__) for m in model.modules()}
    applied: list[tuple[object, str, object]] = []
    try:
        for patch in _PATCHES:
            if (patch.module, patch.cls) not in present:
                continue
            owner = importlib.import_module(patch.module)
            *path, name = patch.target.split(".")
            for part in path:
                owner = getattr(owner, part)
            original = vars(owner)[name]
            applied.append((owner, name, original))
            setattr(owner, name, patch.replacement(original))
        yield [f"{patch.module}.{patch.target}" for patch in _PATCHES if (patch.module, patch.cls) in present]
    finally:
        for owner, method, original in reversed(applied):
            setattr(owner, method, original)


# Funnel Transformer (attention_type="relative_shift"): get_position_embeds walks Python lists of the
# positions (list(range(seq_len))) to size its relative-position aranges, so a trace keeps them at the
# tracing length. The positions are an arithmetic run after a separate first one, so four numbers per
# block (first, start, step, count) give the same bounds as expressions of seq_len.


@dataclass(frozen=True)
class _Positions:
    """[first] + [start + i * step for i in range(count - 1)]: Funnel's (pooled) position ids."""

    first: object
    start: object
    step: object
    count: object

    @property
    def last(self):
        import torch

        ends = torch.sym_min(self.count - 1, 1)  # 0 when the first position is the only one
        return self.first + ends * (self.start + (self.count - 2) * self.step - self.first)

    def pooled(self, config, block_index: int) -> _Positions:
        """FunnelAttentionStructure.stride_pool_pos on the run."""
        if config.separate_cls:
            rest = self.count - (2 if config.truncate_seq else 1)  # pos[1:-1] or pos[1:]
            return _Positions(-(2**block_index) + 1, self.start, self.step * 2, 1 + (rest + 1) // 2)
        # pos[::2]: the first, then pos[2], pos[4], ...
        return _Positions(self.first, self.start + self.step, self.step * 2, (self.count + 1) // 2)


def _relative_pos(pos: _Positions, stride: int, pooled: _Positions | None = None, shift: int = 1, device=None):
    """FunnelAttentionStructure.relative_pos with the bounds as expressions of the sequence length."""
    import torch

    pooled = pooled or pos
    max_dist = pooled.first - pos.first + shift * pooled.count * stride
    min_dist = pooled.first - pos.last
    # arange(max_dist, min_dist - 1, -stride), written with a count of non-negative numbers: exported,
    # a negative step's length is a floor division of negative sizes, which ONNX's Div truncates instead
    count = (max_dist - min_dist) // stride + 1
    return max_dist - stride * torch.arange(count, dtype=torch.long, device=device)


_FUNNEL = "transformers.models.funnel.modeling_funnel"


@export_patch(_FUNNEL, "FunnelAttentionStructure", "FunnelAttentionStructure.get_position_embeds")
def _funnel_position_embeds(original):
    def get_position_embeds(self, seq_len, dtype, device):
        import torch

        if self.config.attention_type == "factorized":  # already sized by torch.arange(seq_len)
            return original(self, seq_len, dtype, device)
        d_model = self.config.d_model
        freq_seq = torch.arange(0, d_model // 2, 1.0, dtype=torch.int64, device=device).to(dtype)
        inv_freq = 1 / (10000 ** (freq_seq / (d_model // 2)))
        rel_pos_id = torch.arange(-seq_len * 2, seq_len * 2, 1.0, dtype=torch.int64, device=device).to(dtype)
        zero_offset = seq_len * 2
        sinusoid = rel_pos_id[:, None] * inv_freq[None]
        sin_embed = self.sin_dropout(torch.sin(sinusoid))
        cos_embed = self.cos_dropout(torch.cos(sinusoid))
        pos_embed = torch.cat([sin_embed, cos_embed], dim=-1)

        def gathered(rel_pos):
            rel_pos = rel_pos[:, None] + zero_offset
            return torch.gather(pos_embed, 0, rel_pos.expand(rel_pos.size(0), d_model))

        pos = pooled_pos = _Positions(0, 1, 1, seq_len)
        embeds = []
        for block_index in range(self.config.num_blocks):
            pooling = None
            if block_index > 0:
                pooled_pos = pos.pooled(self.config, block_index)
                pooling = gathered(_relative_pos(pos, 2 ** (block_index - 1), pooled_pos, shift=2, device=device))
            pos = pooled_pos
            embeds.append([gathered(_relative_pos(pos, 2**block_index, device=device)), pooling])
        return embeds

    return get_position_embeds


@export_patch(_FUNNEL, "FunnelRelMultiheadAttention", "_relative_shift_gather")
def _funnel_shift_gather(original):
    def _relative_shift_gather(positional_attn, context_len, shift):
        """Funnel's shift-by-reshape as the gather it stands for: entry (i, j) is column
        shift * (seq_len - i) + j of row i. The reshapes' divisibility checks become guards that
        torch.export can prove only for even lengths, so it would fix the parity of the sequence."""
        import torch

        batch_size, n_head, seq_len, _ = positional_attn.shape
        rows = torch.arange(seq_len, device=positional_attn.device)
        index = (shift * (seq_len - rows))[:, None] + torch.arange(context_len, device=positional_attn.device)[None]
        return torch.gather(positional_attn, 3, index.expand(batch_size, n_head, seq_len, context_len))

    return _relative_shift_gather


@export_refusal("transformers.models.nystromformer.modeling_nystromformer", "NystromformerSelfAttention")
def _nystromformer_landmarks(attention) -> tuple[str, str] | None:
    if attention.num_landmarks == attention.seq_len:  # exact softmax attention: any length
        return None
    return (
        f"this Nyströmformer (num_landmarks {attention.num_landmarks} < segment_means_seq_len "
        f"{attention.seq_len}) runs only sequences of exactly {attention.seq_len} tokens, in PyTorch too",
        "set num_landmarks = segment_means_seq_len in config.json (exact attention, as the published checkpoints "
        "do), or export the model yourself at that fixed length and compile the .onnx file",
    )


# Longformer: _pad_to_window_size pads only `if padding_len > 0` (a branch on the traced length), and
# the encoder asks `attention_mask.any().item()` whether any token attends globally (a branch on data,
# which torch.export cannot trace). The pad is written unconditionally (a pad of 0 is no pad), and the
# global branch is decided by whether the caller passed a global attention mask (the sequence
# classifier always does, on [CLS]; the other heads never do).
_LONGFORMER = "transformers.models.longformer.modeling_longformer"


@export_patch(_LONGFORMER, "LongformerModel", "LongformerModel._pad_to_window_size")
def _longformer_pad(original):
    def _pad_to_window_size(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, pad_token_id):
        from torch import nn

        if input_ids is None or inputs_embeds is not None:
            return original(self, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds, pad_token_id)
        window = self.config.attention_window
        window = window if isinstance(window, int) else max(window)
        padding_len = (window - input_ids.shape[1] % window) % window
        input_ids = nn.functional.pad(input_ids, (0, padding_len), value=pad_token_id)
        if position_ids is not None:
            position_ids = nn.functional.pad(position_ids, (0, padding_len), value=pad_token_id)
        attention_mask = nn.functional.pad(attention_mask, (0, padding_len), value=0)
        token_type_ids = nn.functional.pad(token_type_ids, (0, padding_len), value=0)
        return padding_len, input_ids, attention_mask, token_type_ids, position_ids, inputs_embeds

    return _pad_to_window_size


@export_patch(_LONGFORMER, "LongformerModel", "LongformerModel.forward")
def _longformer_forward(original):
    def forward(self, *args, **kwargs):
        self.encoder.export_global_attention = kwargs.get("global_attention_mask") is not None
        exporting = getattr(self.config, "onnx_export", False)
        self.config.onnx_export = True  # transformers' own switch: chunks by unfold, not as_strided views
        try:
            return original(self, *args, **kwargs)
        finally:
            del self.encoder.export_global_attention
            self.config.onnx_export = exporting

    return forward


@export_patch(_LONGFORMER, "LongformerEncoder", "LongformerEncoder.forward")
def _longformer_encoder(original):
    def forward(self, hidden_states, attention_mask=None, padding_len=0, output_attentions=False, **kwargs):
        global_attention = getattr(self, "export_global_attention", None)
        if global_attention is None or output_attentions or kwargs.get("output_hidden_states"):
            return original(self, hidden_states, attention_mask, padding_len, output_attentions, **kwargs)
        from transformers.models.longformer.modeling_longformer import LongformerBaseModelOutput

        is_index_masked, is_index_global_attn = attention_mask < 0, attention_mask > 0
        for layer in self.layer:
            hidden_states = layer(
                hidden_states,
                attention_mask=attention_mask,
                is_index_masked=is_index_masked,
                is_index_global_attn=is_index_global_attn,
                is_global_attn=global_attention,
            )[0]
        hidden_states = hidden_states[:, : hidden_states.shape[1] - padding_len]
        if kwargs.get("return_dict", True):
            return LongformerBaseModelOutput(last_hidden_state=hidden_states)
        return (hidden_states,)

    return forward


@export_refusal(_LONGFORMER, "LongformerForSequenceClassification")
def _longformer_global(model) -> tuple[str, str]:
    return (
        "Longformer's global attention (the sequence classifier puts it on [CLS]) sizes tensors by the data "
        "(nonzero), which no exporter traces with a dynamic sequence length",
        "Longformer's token classifier and bare encoder (sentence embeddings) export; for sequence classification "
        "export the model yourself at one fixed length and compile the .onnx file",
    )
