"""Text classification: one label per text, with every label's probability."""

from __future__ import annotations

from ..manifest import Task
from ..postprocess import classify
from .base import TextTask, distinct_labels, labels_of


class TextClassification(TextTask):
    task = Task.TEXT_CLASSIFICATION
    description = "a label per text (sentiment, topic, intent)"

    def decode(self, output, manifest, encodings, texts):
        return classify(output, distinct_labels(labels_of(manifest, output)))


SPEC = TextClassification()
