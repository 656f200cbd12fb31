"""Token classification: one tag per word (the prediction at its first sub-token)."""

from __future__ import annotations

from ..manifest import Task
from ..postprocess import tag_tokens
from .base import TextTask, labels_of


class TokenClassification(TextTask):
    task = Task.TOKEN_CLASSIFICATION
    description = "a tag per word (named entities, part of speech)"

    def decode(self, output, manifest, encodings, texts):
        return tag_tokens(output, labels_of(manifest, output), encodings, texts)


SPEC = TokenClassification()
