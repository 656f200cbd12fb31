#!/usr/bin/env python3
"""Backends side by side: all-MiniLM-L6-v2 at batch 1 x seq 128 on ONNX Runtime, OpenVINO f32 and
bf16, TVM untuned and MetaSchedule-tuned, and PyTorch eager, all in one process, interleaved.

    python benchmarks/backends_real.py [--tune-trials 800 | --tune-minutes 30] [--threads 2] [--rounds 10] [--out DIR]

Building comes first (the tuning time is printed), then every runner, each in its own process
(benchmarks/interleave.py), is timed in rounds that alternate between them. Latency is also stated as a multiple
of this machine's fp32 matrix-multiply floor (../shared/tools/roofline.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_path import encoder_gflop, fp32_peak_gflops  # noqa: E402
from interleave import measure  # noqa: E402

from edgekiln.compiler import Recipe, compile  # noqa: E402
from edgekiln.compiler.quickstart import model_folder  # noqa: E402
from edgekiln.compiler.reference import pytorch_runner  # noqa: E402
from edgekiln.runtime import load  # noqa: E402
from edgekiln.runtime.backends.openvino import compile_ir  # noqa: E402


def build(out: Path, tuning: dict, seq: int) -> dict:
    model, built = str(model_folder()), {}
    for name, options in (
        ("onnxruntime", {"backend": "onnxruntime"}),
        ("openvino", {"backend": "openvino"}),
        ("tvm-untuned", {"backend": "tvm", "sequence_buckets": (seq,), "cache": False}),
        (
            "tvm-tuned",
            {"backend": "tvm", "sequence_buckets": (seq,), **tuning, "cache_dir": str(out / "cache")},
        ),
    ):
        started = time.perf_counter()
        built[name] = {
            "path": str(compile(model, "host", out / name, Recipe.from_flags(**options), force=True).path),
            "build_s": round(time.perf_counter() - started, 1),
        }
        print(f"built {name} in {built[name]['build_s']} s", flush=True)
    return built


def make_runner(name: str, spec: tuple[dict, int]):
    built, threads = spec
    if name == "openvino-bf16":
        return compile_ir(
            Path(built["openvino"]["path"]) / "model.xml", threads=threads, cache_dir=None, precision="bf16"
        )
    if name == "pytorch-eager":
        return pytorch_runner(model_folder(), threads)
    return load(built[name]["path"], threads=threads).run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tune-trials", type=int, default=800)
    parser.add_argument("--tune-minutes", type=float, default=0, help="a tuning time budget instead of trials")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="edgekiln-backends-")))
    parser.add_argument("--reuse", action="store_true", help="measure the artifacts already in --out")
    args = parser.parse_args()

    tuning = {"tune_minutes": args.tune_minutes} if args.tune_minutes else {"tune_trials": args.tune_trials}
    index = args.out / "built.json"
    built = json.loads(index.read_text()) if args.reuse else build(args.out, tuning, args.seq)
    index.write_text(json.dumps(built, indent=2))
    names = ["onnxruntime", "openvino", "openvino-bf16", "tvm-untuned", "tvm-tuned", "pytorch-eager"]
    rng = np.random.default_rng(0)
    feeds = {
        "input_ids": rng.integers(1000, 30000, (1, args.seq)).astype(np.int64),
        "attention_mask": np.ones((1, args.seq), np.int64),
        "token_type_ids": np.zeros((1, args.seq), np.int64),
    }
    times = measure(
        make_runner,
        {name: (built, args.threads) for name in names},
        feeds,
        rounds=args.rounds,
        per_round=args.per_round,
    )
    gflop = encoder_gflop(json.loads((model_folder() / "config.json").read_text()), 1, args.seq)
    peak = fp32_peak_gflops(args.threads)
    base = statistics.median(times["onnxruntime"])
    print(
        f"\nall-MiniLM-L6-v2, batch 1 x seq {args.seq}, {args.threads} threads, "
        f"{args.rounds}x{args.per_round} interleaved runs each; {gflop:.2f} GFLOP"
        + (f", fp32 floor {gflop / peak * 1e3:.2f} ms at {peak:.0f} GFLOP/s" if peak else "")
    )
    rows = {}
    for name, values in times.items():
        p50, p90 = statistics.median(values), float(np.percentile(values, 90))
        rows[name] = {
            "p50_ms": p50,
            "p90_ms": p90,
            "vs_onnxruntime": p50 / base,
            "x_floor": p50 / (gflop / peak * 1e3) if peak else None,
            **built.get(name, {}),
        }
        floor = f"{rows[name]['x_floor']:6.2f}x floor" if peak else ""
        print(f"  {name:15s} p50 {p50:9.2f} ms  p90 {p90:9.2f} ms  {p50 / base:6.2f}x onnxruntime  {floor}")
    (args.out / "backends.json").write_text(
        json.dumps({"seq": args.seq, "threads": args.threads, "rows": rows}, indent=2)
    )
    print(f"json: {args.out / 'backends.json'}")


if __name__ == "__main__":
    main()
