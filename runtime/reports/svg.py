"""Tiny self-contained SVG charts (no plotting library needed on the device)."""

from __future__ import annotations

from html import escape


def bar_chart(title: str, groups: list[str], series: dict[str, list[float]], unit: str) -> str:
    """Grouped horizontal bars: one group per label, one bar per series."""
    colours = ["#3b6ea8", "#e07b39", "#5a9e4b", "#9b59b6"]
    bar, gap, left, width = 14, 10, 150, 420
    peak = max((value for values in series.values() for value in values), default=1.0) or 1.0
    rows = len(groups) * (bar * len(series) + gap)
    height = rows + 50
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{left + width + 90}" height="{height}" '
        f'font-family="sans-serif" font-size="11">',
        f'<text x="4" y="14" font-weight="bold">{escape(title)}</text>',
    ]
    y = 28
    for index, group in enumerate(groups):
        parts.append(f'<text x="4" y="{y + bar * len(series) / 2 + 4}">{escape(group)}</text>')
        for colour, (name, values) in zip(colours, series.items()):
            value = values[index]
            length = max(1.0, width * value / peak)
            parts.append(
                f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{bar - 2}" fill="{colour}">'
                f"<title>{escape(name)}: {value:.3g} {escape(unit)}</title></rect>"
            )
            parts.append(f'<text x="{left + length + 4:.1f}" y="{y + bar - 4}">{value:.3g}</text>')
            y += bar
        y += gap
    for position, (colour, name) in enumerate(zip(colours, series)):
        x = left + position * 130
        parts.append(
            f'<rect x="{x}" y="{height - 16}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14}" y="{height - 7}">{escape(name)} ({escape(unit)})</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
