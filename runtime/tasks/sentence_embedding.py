"""Sentence embedding: a float32 vector per text, pooled (and normalised) inside the model."""

from __future__ import annotations

import numpy as np

from ..manifest import Task
from .base import TextTask


class SentenceEmbedding(TextTask):
    task = Task.SENTENCE_EMBEDDING
    description = "a vector per text (search, clustering, similarity)"

    def decode(self, output, manifest, encodings, texts):
        return np.asarray(output, dtype=np.float32)


SPEC = SentenceEmbedding()
