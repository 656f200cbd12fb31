"""Render the coverage matrix's results into README.md's supported-architectures table.

    EDGEKILN_COVERAGE_JSON=coverage.json pytest tests/test_coverage_matrix.py tests/test_pruning_families.py
    python benchmarks/coverage_table.py coverage.json [more.json …] [--readme README.md]

The table goes between the README's two marker comments; every ❌ carries its reason, numbered below
the table. Nothing in the table is written by hand: a cell no test ran shows "–"."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

BEGIN, END = "<!-- coverage-table:begin -->", "<!-- coverage-table:end -->"
TASKS = ("sequence classification", "token classification", "sentence embedding")
BACKENDS = ("onnxruntime", "openvino", "tvm")
SHORT = {"onnxruntime": "ORT", "openvino": "OV", "tvm": "TVM"}
NAMES = {
    "bert": "BERT",
    "distilbert": "DistilBERT",
    "roberta": "RoBERTa",
    "xlm-roberta": "XLM-RoBERTa",
    "camembert": "CamemBERT",
    "electra": "ELECTRA",
    "albert": "ALBERT",
    "deberta": "DeBERTa",
    "deberta-v2": "DeBERTa-v2",
    "mpnet": "MPNet",
    "modernbert": "ModernBERT",
    "funnel": "Funnel",
    "convbert": "ConvBERT",
    "mobilebert": "MobileBERT",
    "squeezebert": "SqueezeBERT",
    "longformer": "Longformer",
    "big_bird": "BigBird (original_full)",
    "ernie": "ERNIE",
    "nomic_bert": "NomicBERT",
    "eurobert": "EuroBERT",
    "xlm": "XLM",
    "nystromformer": "Nyströmformer",
}


def render(results: dict[str, dict]) -> str:
    families = list(dict.fromkeys(key.split("|")[0] for key in results))
    families.sort(key=lambda f: list(NAMES).index(f) if f in NAMES else len(NAMES))
    reasons: dict[str, int] = {}
    header = ["Architecture", *(f"{task.split()[0]} · {SHORT[b]}" for task in TASKS for b in BACKENDS), "prune"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    counts = {"pass": 0, "total": 0}
    for family in families:
        cells = [
            _cell(results.get(f"{family}|{task}|{backend}"), reasons, counts) for task in TASKS for backend in BACKENDS
        ]
        cells.append(_cell(results.get(f"{family}|prune|-"), reasons, counts, note=True))
        rows.append(f"| {NAMES.get(family, family)} | " + " | ".join(cells) + " |")
    share = counts["pass"] / counts["total"] if counts["total"] else 0.0
    lines = [
        f"{counts['pass']} of {counts['total']} cells ✅ ({share:.0%}), each a tiny random-weight model "
        "compiled for x86-64-avx2 and matched against PyTorch at two batch sizes and sequence lengths "
        "(tests/test_coverage_matrix.py; pruning: tests/test_pruning_families.py).",
        "",
        *rows,
        "",
    ]
    lines += [f"{number}. {reason}" for reason, number in reasons.items()]
    return "\n".join(lines)


def _cell(result: dict | None, reasons: dict[str, int], counts: dict, note: bool = False) -> str:
    if result is None:
        return "–"
    counts["total"] += 1
    if result["status"] == "pass":
        counts["pass"] += 1
        if note and result.get("reason"):  # pruning that keeps the heads says why
            return f"✅ ({reasons.setdefault(_clean(result['reason']), len(reasons) + 1)})"
        return "✅"
    number = reasons.setdefault(_clean(result["reason"]), len(reasons) + 1)
    return f"❌ ({number})"


def _clean(reason: str) -> str:
    """The error line without its hint and run-specific names, so one cause gets one number."""
    reason = re.sub(r" \((?:[^()]|\([^()]*\))*\)$", "", reason.strip())  # the hint the CLI prints apart
    reason = re.sub(r"Name:'[^']*'\s*|Status Message:.*|/tmp/\S+", "", reason)
    reason = re.sub(r"ONNX export of \S+ failed", "ONNX export failed", reason)
    reason = re.sub(r"cannot export \S+ with", "cannot export the model with", reason)
    reason = re.sub(r"This is step 1/3 of exporting the model to ONNX\. Next steps: ", "", reason)
    return reason.replace("|", "/").strip()[:220]


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    readme = Path(__file__).resolve().parents[1] / "README.md"
    if "--readme" in argv:
        at = argv.index("--readme")
        readme, argv = Path(argv[at + 1]), argv[:at] + argv[at + 2 :]
    results: dict[str, dict] = {}
    for path in argv:  # several runs (e.g. the slow TVM cells apart) merge, later files winning
        results.update(json.loads(Path(path).read_text()))
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        print(f"{readme} has no {BEGIN} … {END} markers", file=sys.stderr)
        return 1
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(f"{head}{BEGIN}\n{render(results)}\n{END}{tail}")
    print(f"wrote the table of {len(results)} cells into {readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
