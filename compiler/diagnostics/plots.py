"""PNG plots written beside the JSON reports; report.html embeds them."""

from __future__ import annotations

import json
from pathlib import Path

from edgekiln.runtime.reports.schema import read_reports

SQNR_PLOT = "quantize_sqnr.png"
PRUNING_PLOT = "pruning_layers.png"


def write_plots(reports_dir: Path) -> list[Path]:
    written = []
    quantization = read_reports(reports_dir.parent).quantization
    if quantization is not None and quantization.layers:
        written.append(sqnr_plot([row.model_dump() for row in quantization.layers], reports_dir / SQNR_PLOT))
    pruning = reports_dir / "pruning.json"
    if pruning.is_file():
        report = json.loads(pruning.read_text())
        if report.get("kind") != "conv-channels":
            written.append(pruning_plot(report["layers"], reports_dir / PRUNING_PLOT))
    return written


def pruning_plot(layers: list[dict], path: Path) -> Path:
    """Kept heads and FFN neurons per layer, as fractions of the original, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = list(range(len(layers)))
    heads = [row["heads"][1] / row["heads"][0] for row in layers]
    ffn = [row["ffn"][1] / row["ffn"][0] for row in layers]
    figure, axis = plt.subplots(figsize=(max(5.0, 0.6 * len(layers) + 2), 3.2), dpi=110)
    axis.bar([i - 0.2 for i in index], heads, width=0.4, label="attention heads kept", color="#3b6ea8")
    axis.bar([i + 0.2 for i in index], ffn, width=0.4, label="FFN neurons kept", color="#d08c2f")
    for i, row in enumerate(layers):
        axis.text(i - 0.2, heads[i] + 0.02, str(row["heads"][1]), ha="center", fontsize=7)
        axis.text(i + 0.2, ffn[i] + 0.02, str(row["ffn"][1]), ha="center", fontsize=7)
    axis.set_xticks(index, [f"layer {row['layer']}" for row in layers], fontsize=7)
    axis.set_ylim(0, 1.15)
    axis.set_ylabel("fraction kept")
    axis.set_title("Structured pruning: what each layer keeps")
    axis.legend(fontsize=7, loc="upper right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def sqnr_plot(layers: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["node"] for row in layers]
    values = [row["sqnr_db"] if row["sqnr_db"] is not None else 0.0 for row in layers]
    colours = [
        "#b22222" if row.get("kept_float") else "#3b6ea8" if row.get("int8", True) else "#9a9a9a" for row in layers
    ]
    figure, axis = plt.subplots(figsize=(max(6.0, 0.18 * len(layers) + 2), 3.6), dpi=110)
    axis.bar(range(len(values)), values, color=colours)
    axis.set_xticks(range(len(names)), [_short(name) for name in names], rotation=90, fontsize=6)
    axis.set_ylabel("output SQNR vs float (dB)")
    axis.set_title("Output SQNR per layer vs float (blue: int8, red: returned to float, grey: left float)")
    axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _short(name: str) -> str:
    return name if len(name) <= 28 else "…" + name[-27:]


SELECTION_PLOT = "selection_pareto.png"


def _label_groups(rows: list[dict]) -> dict[tuple[float, float], list[str]]:
    """Candidate numbers (1-based) by the point that labels them: a candidate within 3 % of both axes'
    spans of an earlier one joins its label."""
    xs, ys = [row["p50_ms"] for row in rows], [row["metric"] for row in rows]
    x_span, y_span = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    groups: dict[tuple[float, float], list[str]] = {}
    for number, (x, y) in enumerate(zip(xs, ys), 1):
        near = next((p for p in groups if abs(p[0] - x) < 0.03 * x_span and abs(p[1] - y) < 0.03 * y_span), None)
        groups.setdefault(near or (x, y), []).append(str(number))
    return groups


def selection_plot(report: dict, reports_dir: Path) -> Path | None:
    """Latency against accuracy for every built candidate of `--backend auto`, the Pareto front joined,
    the winner ringed. Points carry numbers, named in a key beside the plot (candidates often sit close
    together, where their names overlapped); points that nearly coincide share one label."""
    rows = [row for row in report["candidates"] if row["error"] is None]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8.8, 4.0), dpi=110)
    front = sorted((row for row in rows if row["name"] in report["pareto"]), key=lambda row: row["p50_ms"])
    axis.plot(
        [row["p50_ms"] for row in front], [row["metric"] for row in front], color="#999", zorder=1, label="Pareto front"
    )
    for row in rows:
        winner = row["name"] == report["winner"]
        axis.scatter(
            row["p50_ms"],
            row["metric"],
            s=70 if winner else 30,
            zorder=2,
            color="#c0392b" if winner else "#3b6ea8",
            edgecolors="black" if winner else "none",
        )
    for (x, y), numbers in _label_groups(rows).items():
        axis.annotate(",".join(numbers), (x, y), fontsize=7, xytext=(4, 3), textcoords="offset points")
    key = "\n".join(
        f"{number}  {row['name'][:40]}{'  (chosen)' if row['name'] == report['winner'] else ''}"
        for number, row in enumerate(rows, 1)
    )
    figure.text(0.70, 0.92, key, fontsize=7, va="top", family="monospace")
    axis.set_xlabel("p50 latency (ms), this machine")
    axis.set_ylabel("accuracy on the eval data (points)")
    axis.set_title("--backend auto: candidates")
    axis.legend(fontsize=8, loc="lower right")
    figure.tight_layout(rect=(0, 0, 0.68, 1))
    path = reports_dir / SELECTION_PLOT
    figure.savefig(path)
    plt.close(figure)
    return path
