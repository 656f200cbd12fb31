"""Torch modules that turn a transformers model into one tensor in, one task output out.

Exporting these (rather than the raw model) puts pooling and normalisation inside the ONNX graph,
so the device needs no torch to compute a sentence embedding.
"""

from __future__ import annotations

from enum import Enum

import torch
from torch import nn


class Pooling(str, Enum):
    MEAN = "mean"
    CLS = "cls"
    MAX = "max"
    MEAN_SQRT_LEN = "mean-sqrt-len"


class LogitsHead(nn.Module):
    """Sequence or token classification: returns `logits`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        return self.model(input_ids=input_ids, attention_mask=attention_mask, **kwargs).logits


class ImageLogits(nn.Module):
    """Image classification: `pixel_values` in, `logits` out."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model(pixel_values=pixel_values).logits


class SentenceEmbedding(nn.Module):
    """Bare encoder + pooling (+ L2 normalisation), as a sentence-transformers folder declares."""

    def __init__(self, encoder: nn.Module, pooling: Pooling, normalize: bool) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooling = pooling
        self.normalize = normalize

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        kwargs = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, **kwargs).last_hidden_state
        pooled = pool(hidden, attention_mask, self.pooling)
        if self.normalize:
            # F.normalize's math, written with plain broadcasting: its expand_as exports a Shape-of
            # chain that TVM's importer cannot resolve to a static shape.
            pooled = pooled / pooled.norm(p=2.0, dim=1, keepdim=True).clamp_min(1e-12)
        return pooled


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: Pooling) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    if pooling is Pooling.CLS:
        return hidden[:, 0]
    if pooling is Pooling.MAX:
        return hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(dim=1).values
    summed = (hidden * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    if pooling is Pooling.MEAN_SQRT_LEN:
        return summed / counts.sqrt()
    return summed / counts
