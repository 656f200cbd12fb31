"""`reports/report.html`: one self-contained page built from the artifact's JSON reports.

Each `reports/<name>.json` becomes a section. Known reports have their own renderer
(`SECTION_RENDERERS`); passes added later register theirs, and any other report is shown as a
table of its top-level values so nothing a pass writes is hidden.
"""
from __future__ import annotations

import base64
import json
from html import escape
from pathlib import Path
from typing import Any, Callable

from ..manifest import REPORTS_DIR, Manifest
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
    reports_dir = folder / REPORTS_DIR
    reports_dir.mkdir(exist_ok=True)
    reports = {path.stem: json.loads(path.read_text()) for path in sorted(reports_dir.glob("*.json"))}
    order = [name for name in SECTION_RENDERERS if name in reports] + \
            [name for name in reports if name not in SECTION_RENDERERS]
    sections = [_summary(manifest)]
    for name in order:
        title, render = SECTION_RENDERERS.get(name, (name.replace("_", " ").capitalize(), _generic))
        sections.append(f"<h2>{escape(title)}</h2>{render(reports[name], reports_dir)}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>edgekiln report: "
            f"{escape(manifest.source)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>edgekiln artifact {escape(manifest.artifact_id)}</h1>{''.join(sections)}</body></html>")
    path = reports_dir / REPORT_HTML
    path.write_text(page)
    return path


def _summary(manifest: Manifest) -> str:
    rows = [["source", manifest.source], ["task", manifest.task.value], ["backend", manifest.backend.value],
            ["target", f"{manifest.target.name} ({manifest.target.arch}, {manifest.target.threads} threads)"],
            ["precision", manifest.precision.value], ["created", manifest.created_at],
            ["inputs", ", ".join(f"{t.name} {t.dtype}{list(t.shape)}" for t in manifest.inputs)],
            ["outputs", ", ".join(f"{t.name} {t.dtype}{list(t.shape)}" for t in manifest.outputs)]]
    if manifest.labels:
        rows.append(["labels", ", ".join(manifest.labels)])
    passes = table(["pass", "seconds", "cached", "output sha256"],
                   [[p.name, p.seconds, p.cached, p.output_sha256[:16]] for p in manifest.passes])
    return f"<h2>Summary</h2>{table(['field', 'value'], rows)}<h3>Pass chain</h3>{passes}"


def image(path: Path, alt: str) -> str:
    """A PNG inlined as a data URI, so the page stays one self-contained file."""
    if not path.is_file():
        return ""
    data = base64.b64encode(path.read_bytes()).decode()
    return f"<p><img alt='{escape(alt)}' src='data:image/png;base64,{data}' style='max-width:100%'></p>"


def _generic(report: dict[str, Any], _folder: Path) -> str:
    return table(["key", "value"], [[key, value] for key, value in report.items()])


@register_section("lower_openvino", "OpenVINO against ONNX Runtime")
@register_section("verify_fidelity", "Fidelity against the reference")
def _fidelity(report: dict[str, Any], _folder: Path) -> str:
    verdict = "ok" if report.get("passed") else "bad"
    limits = report["thresholds"]
    head = (f"<p class='{verdict}'>Reference: {escape(report['reference'])}. Max abs diff "
            f"{report['max_abs_diff']:.3g} (limit {limits['max_abs_diff']:g}), min cosine "
            f"{report['min_cosine']:.6f} (limit {limits['min_cosine']:g}).</p>")
    rows = [[r["batch"], r["sequence"], r["max_abs_diff"], r["min_cosine"]] for r in report["shapes"]]
    return head + table(["batch", "sequence", "max abs diff", "min cosine"], rows)


@register_section("benchmark", "Latency benchmark")
def _benchmark(report: dict[str, Any], _folder: Path) -> str:
    points = report["points"]
    header = ["batch", "seq", "p50 ms", "p90 ms", "p99 ms", "mean ms", "items/s", "peak RSS MB"]
    rows = [[p["batch"], p["seq"], p["p50_ms"], p["p90_ms"], p["p99_ms"], p["mean_ms"], p["throughput"],
             p["peak_rss_mb"]] for p in points]
    against = [p.get("against") for p in points]
    if all(against):
        header += ["PyTorch p50 ms", "speed-up p50"]
        for row, point in zip(rows, points):
            row += [point["against"]["p50_ms"], point["speedup_p50"]]
    series = {"artifact p50": [p["p50_ms"] for p in points]}
    if all(against):
        series["pytorch p50"] = [p["against"]["p50_ms"] for p in points]
    chart = bar_chart("p50 latency", [f"batch {p['batch']} × seq {p['seq']}" for p in points], series, "ms")
    context = (f"<p>{report['threads']} threads, {report['runs']} timed runs after {report['warmup']} warm-up "
               f"runs per point; load time {report['load_seconds']:.2f} s.</p>")
    return context + table(header, rows) + chart


@register_section("quantize_openvino", "Quantization (OpenVINO, NNCF)")
@register_section("quantize", "Quantization")
def _quantization(report: dict[str, Any], folder: Path) -> str:
    chosen = report.get("chosen", "?")
    drop = report.get("accuracy_drop")
    head = (f"<p>Requested <code>{escape(report['requested'])}</code>; kept <b>{escape(str(chosen))}</b>. "
            f"Accuracy drop {'n/a' if drop is None else f'{drop:.2f} points'} "
            f"(budget {report.get('budget_points')}), speed-up {report.get('speedup', 1.0):.2f}× over float "
            f"at batch 1, sequence {report['bench']['sequence']}, {report['bench']['threads']} threads "
            f"(float {report['float_ms']:.2f} ms).</p>")
    if report.get("int8_slower_than_float"):
        head += "<p class='bad'>int8 was not faster than float on this machine.</p>"
    attempts = table(["mode", "accuracy drop (points)", "p50 ms", "kept float", "agreement with float"],
                     [[a["mode"], a["accuracy_drop"], a["latency_ms"], len(a["excluded_nodes"]), a["agreement"]]
                      for a in report["attempts"]])
    worst = sorted((row for row in report.get("layers", []) if row["sqnr_db"] is not None),
                   key=lambda row: row["sqnr_db"])[:15]
    layers = table(["layer", "op", "int8", "SQNR dB", "weight range", "activation range", "kept float"],
                   [[r["node"], r["op"], r.get("int8"), r["sqnr_db"], _range(r["weight_min"], r["weight_max"]),
                     _range(r["activation_min"], r["activation_max"]), r["kept_float"]] for r in worst])
    note = ("<p>SQNR is measured at each layer's output against the float model with everything "
            "upstream quantized too, so it accumulates with depth.</p>")
    return head + attempts + "<h3>Least accurate layers</h3>" + note + layers + \
        image(folder / "quantize_sqnr.png", "SQNR")


def _range(low, high) -> str:
    return "" if low is None else f"[{low:.3g}, {high:.3g}]"


@register_section("pruning", "Structured pruning")
def _pruning(report: dict[str, Any], folder: Path) -> str:
    drop = report.get("accuracy_drop")
    if report.get("kind") == "conv-channels":
        head = (f"<p>Conv channels pruned: MACs {report['macs']['before']:,} → {report['macs']['after']:,} "
                f"(−{report['flops_reduction']:.1%}), parameters {report['parameters']['before']:,} → "
                f"{report['parameters']['after']:,}.</p>")
        return head + table(["layer", "channels before", "channels after"],
                            [[r["layer"], *r["channels"]] for r in report["layers"]])
    metric = report.get("metric", "accuracy")
    flops, params = report["encoder_flops"], report["encoder_parameters"]
    head = (f"<p>Encoder FLOPs at sequence {flops['sequence']}: {flops['before']:,} → {flops['after']:,} "
            f"(−{report['flops_reduction']:.1%}); encoder parameters {params['before']:,} → {params['after']:,}. "
            f"Dev {metric} (points): before pruning {_fmt(report.get('accuracy_before'))}, after pruning "
            f"{_fmt(report.get('accuracy_after_pruning'))}, after recovery "
            f"{_fmt(report.get('accuracy_after_recovery'))}"
            f"; drop {'n/a' if drop is None else f'{drop:.2f} points'}.</p>")
    layers = table(["layer", "heads kept", "FFN width kept", "kept head indices"],
                   [[r["layer"], f"{r['heads'][1]} / {r['heads'][0]}", f"{r['ffn'][1]} / {r['ffn'][0]}",
                     ", ".join(map(str, r["kept_heads"]))] for r in report["layers"]])
    return head + layers + image(folder / "pruning_layers.png", "kept heads and FFN neurons per layer")


@register_section("lower_tvm", "TVM lowering")
def _tvm(report: dict[str, Any], _folder: Path) -> str:
    buckets = ", ".join(f"{b}×{s}" if s else f"batch {b}" for b, s in report["buckets"])
    head = (f"<p>TVM {escape(report['tvm'])}, target <code>{escape(str(report['target']))}</code>; buckets "
            f"(batch × sequence) {escape(buckets)}; {report['tune_trials']} MetaSchedule trials. Checked against "
            f"{escape(report['reference'])} on {escape(report['checked_on'])}: max abs diff "
            f"{report['max_abs_diff']:.3g}, min cosine {report['min_cosine']:.6f}.</p>")
    rows = [[r["batch"], r["sequence"], r["max_abs_diff"], r["min_cosine"]] for r in report["shapes"]]
    return head + table(["batch", "sequence (padded to a bucket)", "max abs diff", "min cosine"], rows)
