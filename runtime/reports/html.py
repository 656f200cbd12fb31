"""`reports/report.html`: one self-contained page built from the artifact's JSON reports.

Each `reports/<name>.json` becomes a section, in the order the passes ran. Typed reports (schema.py)
are rendered by their kind, whatever pass wrote them; other known reports have a renderer of their
own (`SECTION_RENDERERS`), and any other report is shown as a table of its top-level values so
nothing a pass writes is hidden.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

from ..manifest import Manifest
from .files import is_plain_file, report_files, reports_dir, write_text
from .schema import FidelityReport, QuantizationReport
from .svg import bar_chart

REPORT_HTML = "report.html"
Renderer = Callable[[dict[str, Any], Path], str]  # (report, reports folder) -> HTML
SECTION_RENDERERS: dict[str, tuple[str, Renderer]] = {}

_STYLE = """body{font-family:sans-serif;margin:2em;max-width:70em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}.ok{color:#2a7a2a}.bad{color:#b22}
code{background:#f5f5f5;padding:1px 4px}"""


def register_section(name: str, title: str) -> Callable[[Renderer], Renderer]:
    def decorate(renderer: Renderer) -> Renderer:
        SECTION_RENDERERS[name] = (title, renderer)
        return renderer

    return decorate


def table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(str(cell))}</th>" for cell in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(_fmt(cell))}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def write_report(folder: Path, manifest: Manifest) -> Path:
    """(Re)render `reports/report.html` from `reports/*.json` and the manifest."""
    directory = reports_dir(folder)
    reports = {path.stem: _read(path) for path in report_files(directory)}
    ran = [p.name for p in manifest.passes]
    order = sorted(reports, key=lambda name: ran.index(name) if name in ran else len(ran))
    sections = [_summary(manifest)]
    for name in order:
        kind = reports[name].get("kind") if isinstance(reports[name], dict) else None
        title, render = (
            SECTION_RENDERERS.get(name)
            or SECTION_RENDERERS.get(f"kind:{kind}")
            or (name.replace("_", " ").capitalize(), _generic)
        )
        if kind == "fidelity":
            title = FIDELITY_TITLES.get(name, f"{name}: numerical check")
        sections.append(f"<h2>{escape(title)}</h2>{_section(render, reports[name], directory)}")
    page = (
        f"<!doctype html><html><head><meta charset='utf-8'><title>edgekiln report: "
        f"{escape(manifest.source)}</title><style>{_STYLE}</style></head><body>"
        f"<h1>edgekiln artifact {escape(manifest.artifact_id)}</h1>{''.join(sections)}</body></html>"
    )
    return write_text(directory, REPORT_HTML, page)


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        return {"unreadable": f"{type(exc).__name__}: {exc}"[:300]}


def _section(render: Renderer, report: Any, directory: Path) -> str:
    """A report's section; one that does not have its kind's fields (edited, damaged) says so instead."""
    try:
        return render(report, directory)
    except Exception as exc:  # noqa: BLE001 - reports are for people: a damaged one must not stop the page
        return f"<p class='bad'>this report could not be read ({escape(type(exc).__name__)}).</p>"


def _summary(manifest: Manifest) -> str:
    rows = [
        ["source", manifest.source],
        ["task", manifest.task.value],
        ["backend", manifest.backend],
        ["target", f"{manifest.target.name} ({manifest.target.arch}, {manifest.target.threads} threads)"],
        ["precision", manifest.precision.value],
        ["created", manifest.created_at],
        ["inputs", ", ".join(f"{t.name} {t.dtype}{list(t.shape)}" for t in manifest.inputs)],
        ["outputs", ", ".join(f"{t.name} {t.dtype}{list(t.shape)}" for t in manifest.outputs)],
    ]
    if manifest.labels:
        rows.append(["labels", ", ".join(manifest.labels)])
    passes = table(
        ["pass", "seconds", "cached", "output sha256"],
        [[p.name, p.seconds, p.cached, p.output_sha256[:16]] for p in manifest.passes],
    )
    return f"<h2>Summary</h2>{table(['field', 'value'], rows)}<h3>Pass chain</h3>{passes}"


def image(path: Path, alt: str) -> str:
    """A PNG inlined as a data URI, so the page stays one self-contained file."""
    if not is_plain_file(path):  # a link could point anywhere on the machine
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<p><img alt='{escape(alt)}' src='data:image/png;base64,{data}' style='max-width:100%'></p>"


def _generic(report: dict[str, Any], _folder: Path) -> str:
    return table(["key", "value"], [[key, value] for key, value in report.items()])


FIDELITY_TITLES = {
    "verify_fidelity": "Fidelity against the reference",
    "lower_openvino": "OpenVINO against ONNX Runtime",
    "lower_tvm": "TVM lowering",
}


@register_section("kind:fidelity", "Numerical check")
def _fidelity(raw: dict[str, Any], _folder: Path) -> str:
    report = FidelityReport.model_validate(raw)
    verdict = "ok" if report.passed else "bad"
    limits = ", ".join(f"{key.replace('_', ' ')} {value:g}" for key, value in report.thresholds.items())
    head = f"<p class='{verdict}'>{escape(report.summary())}. Limits: {escape(limits)}.</p>"
    if report.details:
        head += table(["detail", "value"], [[key, value] for key, value in report.details.items()])
    header = ["batch", "sequence", "max abs diff", "min cosine"]
    rows = [[r.batch, r.sequence, r.max_abs_diff, r.min_cosine] for r in report.shapes]
    if all(r.sequence is None for r in report.shapes):  # no sequence axis (an image model)
        header, rows = [header[0], *header[2:]], [[row[0], *row[2:]] for row in rows]
    if report.output_kind == "classifier":
        header += ["top-1 agreement", "max error / logit range"]
        rows = [row + [r.argmax_agreement, r.max_relative_error] for row, r in zip(rows, report.shapes)]
    return head + table(header, rows)


@register_section("selection", "Build selection (--backend auto)")
def _selection(report: dict[str, Any], folder: Path) -> str:
    head = f"<p>Chosen: <b>{escape(report['winner'])}</b>, {escape(report['reason'])}.</p>"
    rows = [
        [
            row["name"],
            row["metric"],
            row["accuracy_drop"],
            row["p50_ms"],
            row["p99_ms"],
            row["size_mb"],
            row["build_s"],
            "yes" if row["name"] in report["pareto"] else "",
            row["error"] or "",
        ]
        for row in report["candidates"]
    ]
    return (
        head
        + table(
            [
                "candidate",
                "accuracy",
                "drop (points)",
                "p50 ms",
                "p99 ms",
                "MB",
                "build s",
                "Pareto",
                "not built because",
            ],
            rows,
        )
        + image(folder / "selection_pareto.png", "latency vs accuracy")
    )


@register_section("profile", "Where the time goes (bench --profile)")
def _profile(report: dict[str, Any], _folder: Path) -> str:
    head = (
        f"<p>{escape(report['backend'])}, batch {report['batch']} × sequence {report['sequence']}, "
        f"{report['runs']} runs, {report['threads']} threads: {report['total_ms']:.3f} ms of operator time per "
        f"run, {report['matmul_share']:.1%} in matrix products.</p>"
    )
    layers = bar_chart(
        "time per layer",
        [row["layer"] for row in report["layers"]],
        {"ms per run": [row["ms"] for row in report["layers"]]},
        "ms",
    )
    nodes = table(
        ["node", "op", "ms", "share"],
        [[r["node"], r["op_type"], r["ms"], f"{r['share']:.1%}"] for r in report["top_nodes"]],
    )
    types = table(
        ["op type", "ms", "share"], [[r["op_type"], r["ms"], f"{r['share']:.1%}"] for r in report["op_types"][:12]]
    )
    return head + layers + "<h3>Slowest nodes</h3>" + nodes + "<h3>By operator type</h3>" + types


@register_section("benchmark", "Latency benchmark")
def _benchmark(report: dict[str, Any], _folder: Path) -> str:
    points = report["points"]
    header = ["batch", "seq", "p50 ms", "p90 ms", "p99 ms", "mean ms", "items/s", "peak RSS MB"]
    rows = [
        [
            p["batch"],
            "-" if p["seq"] is None else p["seq"],
            *(p[k] for k in ("p50_ms", "p90_ms", "p99_ms")),
            p["mean_ms"],
        ]
        + [p["throughput"], p["peak_rss_mb"]]
        for p in points
    ]
    against = [p.get("against") for p in points]
    if all(against):
        header += ["PyTorch p50 ms", "speed-up p50"]
        for row, point in zip(rows, points):
            row += [point["against"]["p50_ms"], point["speedup_p50"]]
    series = {"artifact p50": [p["p50_ms"] for p in points]}
    if all(against):
        series["pytorch p50"] = [p["against"]["p50_ms"] for p in points]
    names = [f"batch {p['batch']}" + ("" if p["seq"] is None else f" × seq {p['seq']}") for p in points]
    chart = bar_chart("p50 latency", names, series, "ms")
    context = (
        f"<p>{report['threads']} threads, {report['runs']} timed runs after {report['warmup']} warm-up "
        f"runs per point; load time {report['load_seconds']:.2f} s.</p>"
    )
    return context + table(header, rows) + chart


@register_section("kind:quantization", "Quantization")
def _quantization(raw: dict[str, Any], folder: Path) -> str:
    report = QuantizationReport.model_validate(raw)
    drop = report.accuracy_drop
    sequence = f"sequence {report.bench['sequence']}, " if "sequence" in report.bench else ""
    head = (
        f"<p>{escape(report.backend)} ({escape(report.method)}): requested <code>{escape(report.requested)}"
        f"</code>; kept <b>{escape(report.chosen)}</b>. Accuracy drop {'n/a' if drop is None else f'{drop:.2f} points'}"
        f" (budget {report.budget_points}), speed-up {report.speedup:.2f}× over float at batch 1, {sequence}"
        f"{report.bench.get('threads', '?')} threads (float {report.float_ms:.2f} ms).</p>"
    )
    if report.int8_slower_than_float:
        head += "<p class='bad'>int8 was not faster than float on this machine.</p>"
    if report.fidelity is not None:
        head += f"<p>{escape(report.fidelity.summary())} (random inputs, the fidelity shapes).</p>"
    attempts = table(
        ["mode", "accuracy drop (points)", "p50 ms", "kept float", "agreement with float"],
        [[a.mode, a.accuracy_drop, a.latency_ms, len(a.excluded_nodes), a.agreement] for a in report.attempts],
    )
    worst = sorted((row for row in report.layers if row.sqnr_db is not None), key=lambda row: row.sqnr_db)[:15]
    layers = table(
        ["layer", "op", "int8", "SQNR dB", "weight range", "activation range", "kept float"],
        [
            [
                r.node,
                r.op,
                r.int8,
                r.sqnr_db,
                _range(r.weight_min, r.weight_max),
                _range(r.activation_min, r.activation_max),
                r.kept_float,
            ]
            for r in worst
        ],
    )
    note = (
        "<p>SQNR is measured at each layer's output against the float model with everything "
        "upstream quantized too, so it accumulates with depth.</p>"
    )
    if not report.layers:
        return head + attempts + "<p>No per-layer table for this quantizer.</p>"
    return (
        head + attempts + "<h3>Least accurate layers</h3>" + note + layers + image(folder / "quantize_sqnr.png", "SQNR")
    )


def _range(low, high) -> str:
    return "" if low is None else f"[{low:.3g}, {high:.3g}]"


@register_section("pruning", "Structured pruning")
def _pruning(report: dict[str, Any], folder: Path) -> str:
    drop = report.get("accuracy_drop")
    if report.get("kind") == "conv-channels":
        head = (
            f"<p>Conv channels pruned: MACs {report['macs']['before']:,} → {report['macs']['after']:,} "
            f"(−{report['flops_reduction']:.1%}), parameters {report['parameters']['before']:,} → "
            f"{report['parameters']['after']:,}. Dev accuracy (points): before {_fmt(report.get('accuracy_before'))}, "
            f"after pruning {_fmt(report.get('accuracy_after_pruning'))}, after recovery "
            f"{_fmt(report.get('accuracy_after_recovery'))}.</p>"
        )
        return head + table(
            ["layer", "channels before", "channels after"], [[r["layer"], *r["channels"]] for r in report["layers"]]
        )
    metric = report.get("metric", "accuracy")
    flops, params = report["encoder_flops"], report["encoder_parameters"]
    head = (
        f"<p>Encoder FLOPs at sequence {flops['sequence']}: {flops['before']:,} → {flops['after']:,} "
        f"(−{report['flops_reduction']:.1%}); encoder parameters {params['before']:,} → {params['after']:,}. "
        f"Dev {metric} (points): before pruning {_fmt(report.get('accuracy_before'))}, after pruning "
        f"{_fmt(report.get('accuracy_after_pruning'))}, after recovery "
        f"{_fmt(report.get('accuracy_after_recovery'))}"
        f"; drop {'n/a' if drop is None else f'{drop:.2f} points'}.</p>"
    )
    layers = table(
        ["layer", "heads kept", "FFN width kept", "kept head indices"],
        [
            [
                r["layer"],
                f"{r['heads'][1]} / {r['heads'][0]}",
                f"{r['ffn'][1]} / {r['ffn'][0]}",
                ", ".join(map(str, r["kept_heads"])),
            ]
            for r in report["layers"]
        ],
    )
    return head + layers + image(folder / "pruning_layers.png", "kept heads and FFN neurons per layer")
