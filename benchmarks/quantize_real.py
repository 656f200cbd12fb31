#!/usr/bin/env python3
"""Quantize a fine-tuned checkpoint (from benchmarks/finetune_real.py) with `--quantize auto` and an
accuracy budget, then measure float and int8 artifacts side by side.

    python benchmarks/quantize_real.py edgekiln-out/bench/sst2-full sst2 --budget 0.5
    python benchmarks/quantize_real.py edgekiln-out/bench/wnut17-full wnut17 --budget 1.0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edgekiln.cli.artifact_commands import run_bench
from edgekiln.compiler import Recipe, compile
from edgekiln.compiler.data import load_dataset
from edgekiln.compiler.evaluate import evaluate
from edgekiln.runtime.bench import BenchConfig

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SPLITS = {
    "sst2": ("sst2:train", "sst2:validation", "sst2:validation"),
    "wnut17": ("wnut17:train", "wnut17:dev", "wnut17:test"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("dataset", choices=sorted(SPLITS))
    parser.add_argument("--budget", type=float, default=0.5)
    parser.add_argument("--mode", default="auto")
    parser.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "openvino"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("edgekiln-out/bench"))
    args = parser.parse_args()
    calibration, dev, test = (str(DATA / split) for split in SPLITS[args.dataset])
    name = f"{args.checkpoint.name}-{args.backend}-{args.mode}"
    fp32 = compile(
        args.checkpoint,
        "host",
        args.out / f"{args.checkpoint.name}-{args.backend}-fp32",
        force=True,
        recipe=Recipe.from_flags(backend=args.backend),
    ).path  # int8 is compared with float of the same backend
    int8 = compile(
        args.checkpoint,
        "host",
        args.out / name,
        force=True,
        recipe=Recipe.from_flags(
            backend=args.backend,
            quantize=args.mode,
            calibration=calibration,
            eval_data=dev,
            accuracy_budget=args.budget,
        ),
    ).path
    report_name = "quantize_openvino.json" if args.backend == "openvino" else "quantize.json"
    report = json.loads((int8 / "reports" / report_name).read_text())
    reported = load_dataset(test)
    scores = evaluate(int8, reported, against=fp32)
    metric = "accuracy" if "entity_f1" not in scores else "entity_f1"
    config = BenchConfig(batches=(1,), sequences=(128,), runs=100, warmup=10)
    float_bench = run_bench(fp32, config, threads=args.threads, against=None)["points"][0]
    int8_bench = run_bench(int8, config, threads=args.threads, against=None)["points"][0]
    summary = {
        "checkpoint": str(args.checkpoint),
        "backend": args.backend,
        "mode_requested": args.mode,
        "chosen": report["chosen"],
        "budget_points": args.budget,
        "kept_float_layers": len(report["excluded_nodes"]),
        "dev_drop_points": report["accuracy_drop"],
        "reported_split": test.rsplit("/", 1)[-1],
        f"fp32_{metric}": scores["against"][metric],
        f"int8_{metric}": scores[metric],
        "reported_drop_points": round((scores["against"][metric] - scores[metric]) * 100, 2),
        "agreement": scores["agreement"],
        "fp32_p50_ms": float_bench["p50_ms"],
        "int8_p50_ms": int8_bench["p50_ms"],
        "speedup_p50": round(float_bench["p50_ms"] / int8_bench["p50_ms"], 2),
        "attempts": [{k: a[k] for k in ("mode", "accuracy_drop", "latency_ms")} for a in report["attempts"]],
    }
    (args.out / f"{name}.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
