"""`edgekiln inspect MODEL.onnx`: what an ONNX file is, and what a compile would do to it."""

from __future__ import annotations

import json
import math
from pathlib import Path

from .graph_io import graph_io, load_onnx
from .onnx_external import data_files
from .onnx_upgrade import plan
from .preflight import estimate_flops, format_preflight, preflight, weight_shapes


def describe_onnx(path: Path) -> dict:
    model = load_onnx(path, load_external_data=False)  # checked, weights left on disk
    inputs, outputs = graph_io(model)
    conversion = plan(model)
    folder = path.parent.resolve()
    return {
        "file": path.name,
        "ir_version": model.ir_version,
        "opsets": {entry.domain or "ai.onnx": entry.version for entry in model.opset_import},
        "producer": " ".join(part for part in (model.producer_name, model.producer_version) if part) or None,
        "inputs": [spec.model_dump(mode="json") for spec in inputs],
        "outputs": [spec.model_dump(mode="json") for spec in outputs],
        "parameters": sum(math.prod(dims) for dims in weight_shapes(model).values()),
        "nodes": len(model.graph.node),
        "external_data": [
            {"file": file.relative_to(folder).as_posix(), "bytes": file.stat().st_size}
            for file in data_files(path, model)
        ],
        "conversion": {**conversion.report(), "notes": list(conversion.notes())},
        "flops": estimate_flops(model),
        "preflight": preflight(path, model),
    }


def format_description(report: dict) -> str:
    conversion = report["conversion"]
    rows = [
        ("file", report["file"]),
        ("ir version", str(report["ir_version"])),
        ("opsets", ", ".join(f"{domain} {version}" for domain, version in report["opsets"].items())),
        ("producer", report["producer"] or "(not recorded)"),
        ("parameters", f"{report['parameters']:,} in {report['nodes']} nodes"),
    ]
    rows += [(f"input {t['name']}", f"{t['dtype']} {t['shape']}") for t in report["inputs"]]
    rows += [(f"output {t['name']}", f"{t['dtype']} {t['shape']}") for t in report["outputs"]]
    rows += [(f"data {d['file']}", f"{d['bytes'] / 1e6:,.1f} MB") for d in report["external_data"]]
    rows += [("compile would", note) for note in conversion["notes"]] or [("compile would", "take the graph as it is")]
    if report.get("flops") is not None:
        rows.append(("flops", f"~{report['flops'] / 1e9:,.3f} GFLOPs at the model's fixed sizes (batch 1)"))
    rows += format_preflight(report.get("preflight", []))
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key.ljust(width)}  {value}" for key, value in rows)


def print_description(path: Path, *, as_json: bool) -> int:
    report = describe_onnx(path)
    print(json.dumps(report, indent=2) if as_json else format_description(report))
    return 0
