#!/usr/bin/env python3
"""Structured pruning on a fine-tuned checkpoint (from benchmarks/finetune_real.py): prune to a FLOPs
target with recovery, then measure unpruned and pruned artifacts on ONNX Runtime and OpenVINO, and
pruned + int8 stacked, side by side in one process at batch 1 x seq 128.

    python benchmarks/prune_real.py edgekiln-out/bench/sst2-full --flops 0.4
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from interleave import measure  # noqa: E402

from edgekiln.compiler import (
    Recipe,
    compile,  # noqa: E402
)
from edgekiln.compiler.data import load_dataset
from edgekiln.compiler.evaluate import evaluate
from edgekiln.compiler.pruning.config import PruneConfig, RecoveryConfig
from edgekiln.runtime import load

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def build(args) -> dict:
    train, dev = str(DATA / "sst2:train"), str(DATA / "sst2:validation")
    prune = PruneConfig(flops=args.flops)
    recover = RecoveryConfig(epochs=args.recover_epochs, max_train_examples=args.recover_examples, threads=args.threads)
    pruned = Recipe.from_flags(prune=prune, recover=recover, train_data=train, eval_data=dev)  # a cached stage
    builds = {
        "pruned-onnxruntime": pruned.with_overrides({"backend.name": "onnxruntime"}),
        "pruned-openvino": pruned.with_overrides({"backend.name": "openvino"}),
        "pruned-int8-onnxruntime": Recipe.from_flags(
            pruned, backend="onnxruntime", quantize="dynamic", calibration=train, accuracy_budget=1.0
        ),
        "onnxruntime": Recipe.from_flags(backend="onnxruntime"),
        "openvino": Recipe.from_flags(backend="openvino"),
    }
    paths, prune_seconds = {}, 0.0
    for name, recipe in builds.items():
        started = time.perf_counter()
        paths[name] = compile(args.checkpoint, "host", args.out / name, recipe, force=True, progress=print).path
        prune_seconds = prune_seconds or time.perf_counter() - started  # the first build prunes and recovers
    return {"paths": {k: str(v) for k, v in paths.items()}, "prune_and_recover_seconds": round(prune_seconds, 1)}


def open_artifact(_name: str, spec: tuple[str, int]):
    path, threads = spec
    return load(path, threads=threads).run


def latency(paths: dict, threads: int) -> dict:
    """p50 ms per artifact at batch 1 x seq 128, each in its own process, interleaved."""
    rng = np.random.default_rng(0)
    feeds = {
        "input_ids": rng.integers(1000, 30000, (1, 128)).astype(np.int64),
        "attention_mask": np.ones((1, 128), np.int64),
        "token_type_ids": np.zeros((1, 128), np.int64),
    }
    times = measure(open_artifact, {name: (path, threads) for name, path in paths.items()}, feeds)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--flops", type=float, default=0.4)
    parser.add_argument("--recover-epochs", type=int, default=1)
    parser.add_argument("--recover-examples", type=int, default=60000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("edgekiln-out/bench/prune"))
    parser.add_argument("--reuse", action="store_true", help="measure the artifacts already in --out")
    args = parser.parse_args()
    index = args.out / "built.json"
    built = json.loads(index.read_text()) if args.reuse else build(args)
    index.write_text(json.dumps(built, indent=2))
    paths = built["paths"]
    report = json.loads((Path(paths["pruned-onnxruntime"]) / "reports" / "pruning.json").read_text())
    quant = json.loads((Path(paths["pruned-int8-onnxruntime"]) / "reports" / "quantize.json").read_text())
    dev = load_dataset(str(DATA / "sst2:validation"))
    int8_accuracy = evaluate(paths["pruned-int8-onnxruntime"], dev)["accuracy"] * 100
    p50 = latency(paths, args.threads)
    summary = {
        "flops_reduction": report["flops_reduction"],
        "accuracy_before": report["accuracy_before"],
        "accuracy_after_pruning": report["accuracy_after_pruning"],
        "accuracy_after_recovery": report["accuracy_after_recovery"],
        "accuracy_drop": report["accuracy_drop"],
        "pruned_int8_accuracy": int8_accuracy,
        "int8_drop_vs_pruned_points": quant["accuracy_drop"],
        "prune_and_recover_seconds": report["seconds"],  # the stage's own time (later compiles reuse it)
        "recovery_seconds": report["recovery"]["seconds"] if report["recovery"] else None,
        "heads_kept": [layer["heads"][1] for layer in report["layers"]],
        "ffn_kept": [layer["ffn"][1] for layer in report["layers"]],
        "p50_ms": p50,
        "speedup": {
            "onnxruntime": p50["onnxruntime"] / p50["pruned-onnxruntime"],
            "openvino": p50["openvino"] / p50["pruned-openvino"],
            "pruned+int8 vs onnxruntime fp32": p50["onnxruntime"] / p50["pruned-int8-onnxruntime"],
        },
    }
    (args.out / "prune_real.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
