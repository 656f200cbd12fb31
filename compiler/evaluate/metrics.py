"""Metrics: accuracy, macro/micro F1 and the per-class table (scikit-learn), entity-level
precision/recall/F1 with conlleval semantics (seqeval). Every figure is a fraction in [0, 1]."""

from __future__ import annotations

from collections.abc import Sequence


def classification_metrics(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]) -> dict:
    """Over `labels` and every other class gold or predicted holds (after them, sorted): a prediction
    of a class the eval data lacks counts against macro and micro F1 (micro F1 equals accuracy)."""
    from sklearn.metrics import accuracy_score, f1_score, precision_recall_fscore_support

    labels = list(labels)
    labels += sorted((set(gold) | set(predicted)) - set(labels))
    precision, recall, f1, support = precision_recall_fscore_support(gold, predicted, labels=labels, zero_division=0)
    return {
        "accuracy": float(accuracy_score(gold, predicted)),
        "macro_f1": float(f1_score(gold, predicted, labels=labels, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(gold, predicted, labels=labels, average="micro", zero_division=0)),
        "examples": len(gold),
        "per_class": [
            {"label": label, "precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support)
        ],
    }


def entity_metrics(gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]) -> dict:
    """Entity-level scores (an entity counts only if its type and both boundaries match), plus the
    token-level report over every tag."""
    from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

    gold, predicted = [list(s) for s in gold], [list(s) for s in predicted]
    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    per_type = [
        {
            "type": name,
            "precision": float(row["precision"]),
            "recall": float(row["recall"]),
            "f1": float(row["f1-score"]),
            "support": int(row["support"]),
        }
        for name, row in sorted(report.items())
        if not name.endswith(" avg")
    ]
    flat_gold = [tag for sentence in gold for tag in sentence]
    flat_predicted = [tag for sentence in predicted for tag in sentence]
    tags = sorted(set(flat_gold) | set(flat_predicted), key=lambda t: (t != "O", t[2:], t))
    tokens = classification_metrics(flat_gold, flat_predicted, tags)
    return {
        "entity_precision": float(precision_score(gold, predicted, zero_division=0)),
        "entity_recall": float(recall_score(gold, predicted, zero_division=0)),
        "entity_f1": float(f1_score(gold, predicted, zero_division=0)),
        "per_entity_type": per_type,
        "accuracy": tokens["accuracy"],
        "macro_f1": tokens["macro_f1"],
        "per_class": tokens["per_class"],
        "examples": len(gold),
    }


def agreement(first: Sequence, second: Sequence) -> float:
    """Share of predictions that are identical (per example, or per token for tag sequences)."""
    pairs = [
        (a, b) for x, y in zip(first, second) for a, b in (zip(x, y) if isinstance(x, (list, tuple)) else [(x, y)])
    ]
    return sum(a == b for a, b in pairs) / max(len(pairs), 1)
