#!/usr/bin/env python3
"""Core-path benchmark: all-MiniLM-L6-v2 compiled to ONNX Runtime and OpenVINO fp32 vs PyTorch eager.

    python benchmarks/core_path.py [--threads 2] [--batch 1] [--seq 128] [--runs 100] [--out DIR]

Both run in this one process with the same thread count and the same inputs. The latency is also
stated as a multiple of this machine's fp32 matrix-multiply floor (../shared/tools/roofline.py),
so figures compare across machines.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from edgekiln.cli.artifact_commands import run_bench
from edgekiln.cli.parsing import int_list
from edgekiln.compiler import Recipe, compile
from edgekiln.compiler.quickstart import compile_default, model_folder
from edgekiln.runtime.bench import BenchConfig, format_table

ROOFLINE = Path(__file__).resolve().parents[2] / "shared" / "tools" / "roofline.py"


def encoder_gflop(config: dict, batch: int, seq: int) -> float:
    """Multiply-adds x 2 of a BERT encoder forward pass (projections, FFN, attention matmuls)."""
    h, ffn, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    per_layer = 2 * seq * (4 * h * h + 2 * h * ffn) + 2 * 2 * seq * seq * h
    return batch * layers * per_layer / 1e9


def fp32_peak_gflops(threads: int) -> float | None:
    if not ROOFLINE.is_file():
        return None
    done = subprocess.run(
        [sys.executable, str(ROOFLINE), "--threads", str(threads)], capture_output=True, text=True, timeout=600
    )
    match = re.search(r"^fp32\s+([\d.]+) GFLOP/s", done.stdout, re.MULTILINE)
    return float(match.group(1)) if match else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int_list, default=(1,))
    parser.add_argument("--seq", type=int_list, default=(128,))
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="edgekiln-bench-")) / "minilm")
    args = parser.parse_args()

    result = compile_default(args.out, lambda message: None)
    openvino = compile(
        str(model_folder()),
        "host",
        args.out.with_name("minilm-openvino"),
        force=True,
        recipe=Recipe.from_flags(backend="openvino"),
    ).path
    config = BenchConfig(batches=args.batch, sequences=args.seq, runs=args.runs, warmup=10)
    ov_report = run_bench(openvino, config, threads=args.threads, against=None)
    report = run_bench(result.path, config, threads=args.threads, against=str(model_folder()))
    print("onnxruntime fp32 vs pytorch eager:")
    print(format_table(report))
    print("openvino fp32:")
    print(format_table(ov_report))
    peak = fp32_peak_gflops(args.threads)
    model_config = json.loads((model_folder() / "config.json").read_text())
    for point in report["points"]:
        gflop = encoder_gflop(model_config, point["batch"], point["seq"])
        line = f"batch {point['batch']} seq {point['seq']}: {gflop:.2f} GFLOP"
        if peak:
            floor_ms = gflop / peak * 1e3
            line += (
                f"; fp32 floor {floor_ms:.2f} ms at {peak:.0f} GFLOP/s -> onnxruntime "
                f"{point['p50_ms'] / floor_ms:.2f}x floor, pytorch {point['against']['p50_ms'] / floor_ms:.2f}x"
            )
        print(line)
    for point, ov_point in zip(report["points"], ov_report["points"]):
        print(
            f"batch {point['batch']} seq {point['seq']}: openvino p50 {ov_point['p50_ms']:.2f} ms = "
            f"{point['against']['p50_ms'] / ov_point['p50_ms']:.2f}x pytorch, "
            f"{point['p50_ms'] / ov_point['p50_ms']:.2f}x onnxruntime"
        )
    report["openvino"] = ov_report
    (args.out.parent / "core_path.json").write_text(json.dumps(report, indent=2))
    print(f"json: {args.out.parent / 'core_path.json'}")


if __name__ == "__main__":
    main()
