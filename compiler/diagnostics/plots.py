"""PNG plots written beside the JSON reports; report.html embeds them."""
from __future__ import annotations

import json
from pathlib import Path

SQNR_PLOT = "quantize_sqnr.png"


def write_plots(reports_dir: Path) -> list[Path]:
    written = []
    quantize = reports_dir / "quantize.json"
    if quantize.is_file():
        layers = json.loads(quantize.read_text()).get("layers") or []
        if layers:
            written.append(sqnr_plot(layers, reports_dir / SQNR_PLOT))
    return written


def sqnr_plot(layers: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [row["node"] for row in layers]
    values = [row["sqnr_db"] if row["sqnr_db"] is not None else 0.0 for row in layers]
    colours = ["#b22222" if row.get("kept_float") else "#3b6ea8" if row.get("int8", True) else "#9a9a9a"
               for row in layers]
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
