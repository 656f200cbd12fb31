"""Classification metrics over the data's classes and every class predicted, checked against
scikit-learn's own (default) label set, which takes the union of gold and predicted."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, f1_score

from edgekiln.compiler.evaluate.metrics import classification_metrics


def test_a_prediction_of_a_class_the_data_lacks_counts_against_f1():
    gold = ["1"] * 13
    predicted = ["1"] * 11 + ["0"] * 2
    report = classification_metrics(gold, predicted, ["1"])  # the eval data holds class "1" only
    assert report["accuracy"] == pytest.approx(11 / 13)
    assert report["micro_f1"] == pytest.approx(report["accuracy"])
    assert report["macro_f1"] == pytest.approx(f1_score(gold, predicted, average="macro"))
    assert [row["label"] for row in report["per_class"]] == ["1", "0"]
    assert report["per_class"][1]["support"] == 0 and report["per_class"][1]["precision"] == 0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcd"), st.sampled_from("abcde")), min_size=1, max_size=40))
def test_matches_scikit_learn_over_the_union_of_classes(pairs):
    gold, predicted = [g for g, _ in pairs], [p for _, p in pairs]
    report = classification_metrics(gold, predicted, sorted(set(gold)))
    assert report["micro_f1"] == pytest.approx(accuracy_score(gold, predicted))
    assert report["macro_f1"] == pytest.approx(f1_score(gold, predicted, average="macro", zero_division=0))
    assert {row["label"] for row in report["per_class"]} == set(gold) | set(predicted)
