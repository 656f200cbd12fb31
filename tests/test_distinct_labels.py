"""A class name given to several classes (ImageNet-1k's Hugging Face id2label has two 'crane's) must not
let one class's score hide another's: classifiers key their scores by label."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgekiln.compiler.sources.base import ModelSource, SourceKind
from edgekiln.runtime.manifest import Task
from edgekiln.runtime.postprocess import classify
from edgekiln.runtime.tasks.base import distinct_labels
from edgekiln.runtime.tasks.image_classification import top_k

LABELS = ("cat", "cat", "coin")


def test_repeated_names_gain_their_index_and_unique_ones_stay():
    assert distinct_labels(LABELS) == ("cat (0)", "cat (1)", "coin")
    assert distinct_labels(("a", "b")) == ("a", "b")


@given(st.lists(st.sampled_from(["a", "b", "a (1)", "c"]), min_size=1, max_size=8))
def test_distinct_labels_keep_order_and_names(names):
    out = distinct_labels(tuple(names))
    assert len(out) == len(names)
    assert all(new == old or new.startswith(f"{old} (") for new, old in zip(out, names))
    if len(set(names)) == len(names):
        assert out == tuple(names)
    assert len(set(out)) == len(out)  # ("a", "a", "a (1)") once gave "a (1)" twice


def test_top_k_keeps_every_class_when_names_repeat():
    logits = np.array([[0.2, 3.0, 0.1]])
    (answer,) = top_k(logits, distinct_labels(LABELS), 3)
    assert len(answer.scores) == 3 and answer.label == "cat (1)"
    assert answer.score == answer.scores[answer.label] == max(answer.scores.values())
    (text,) = classify(logits, distinct_labels(LABELS))
    assert len(text.scores) == 3 and text.scores[text.label] == text.score


def _source(task: Task, labels):
    return ModelSource(SourceKind.ONNX_FILE, "test", "0", task, labels, make_feeds=lambda *a: {})


def test_a_classifier_source_gets_distinct_labels_and_a_tagger_keeps_its_own():
    assert _source(Task.IMAGE_CLASSIFICATION, LABELS).labels == ("cat (0)", "cat (1)", "coin")
    assert _source(Task.TEXT_CLASSIFICATION, LABELS).labels == ("cat (0)", "cat (1)", "coin")
    assert _source(Task.TOKEN_CLASSIFICATION, ("O", "O", "B-PER")).labels == ("O", "O", "B-PER")
    assert _source(Task.IMAGE_CLASSIFICATION, None).labels is None


def test_data_labelled_with_a_shared_name_is_told_which_classes_it_could_mean():
    from edgekiln.compiler.data import DataError, Dataset, DataTask
    from edgekiln.compiler.data.types import ImageExample
    from edgekiln.compiler.evaluate.predict import map_labels

    data = Dataset(DataTask.IMAGE_CLASSIFICATION, (ImageExample("a.png", "cat"), ImageExample("b.png", "coin")), "d")
    with pytest.raises(DataError, match=r"label 'cat' in d names 2 of m's classes: \['cat \(0\)', 'cat \(1\)'\]"):
        map_labels(data, distinct_labels(LABELS), "m")
    assert map_labels(data, ("cat", "coin"), "m") == {"cat": "cat", "coin": "coin"}
