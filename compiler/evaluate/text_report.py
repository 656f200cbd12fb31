"""Evaluation results as text, in the familiar classification-report layout."""

from __future__ import annotations


def format_evaluation(report: dict) -> str:
    parts = [_one(report)]
    if "against" in report:
        parts.append(_one(report["against"]))
        diff = ", ".join(f"{key} {value * 100:+.2f} points" for key, value in report["difference"].items())
        parts.append(
            f"difference ({report['target']} minus {report['against']['target']}): {diff}\n"
            f"prediction agreement: {report['agreement'] * 100:.2f} %"
        )
    return "\n\n".join(parts)


def _one(report: dict) -> str:
    lines = [f"{report['target']} on {report['data']} ({report['examples']} examples)"]
    if "entity_f1" in report:
        lines.append("entity level (conlleval):")
        lines += _table(
            [
                (row["type"], row["precision"], row["recall"], row["f1"], row["support"])
                for row in report["per_entity_type"]
            ]
        )
        lines.append(
            f"{'micro avg':>16} {report['entity_precision']:9.4f} {report['entity_recall']:9.4f} "
            f"{report['entity_f1']:9.4f}"
        )
        lines.append("token level:")
    lines += _table(
        [(row["label"], row["precision"], row["recall"], row["f1"], row["support"]) for row in report["per_class"]]
    )
    lines.append(f"{'accuracy':>16} {'':9} {'':9} {report['accuracy']:9.4f}")
    lines.append(f"{'macro f1':>16} {'':9} {'':9} {report['macro_f1']:9.4f}")
    if "top5_accuracy" in report:
        lines.append(f"{'top-5 accuracy':>16} {'':9} {'':9} {report['top5_accuracy']:9.4f}")
    if report.get("words_past_max_length"):
        lines.append(
            f"note: {report['words_past_max_length']} words fell past the model's longest sequence and "
            "were scored as O (the model never saw them)"
        )
    if report.get("tags_the_model_lacks"):
        lines.append(
            f"note: the data's tags {report['tags_the_model_lacks']} are not among the model's labels: "
            "it never predicts them, so their entities count as missed"
        )
    skipped = report.get("skipped_images")
    if skipped:
        first = skipped[0]
        lines.append(
            f"note: {len(skipped)} unreadable image{'s' if len(skipped) > 1 else ''} left out "
            f"(first: {first['path']}: {first['error']}; all in the JSON report)"
        )
    return "\n".join(lines)


def _table(rows: list[tuple]) -> list[str]:
    out = [f"{'':>16} {'precision':>9} {'recall':>9} {'f1-score':>9} {'support':>9}"]
    out += [f"{name[:16]:>16} {p:9.4f} {r:9.4f} {f:9.4f} {s:9d}" for name, p, r, f, s in rows]
    return out
