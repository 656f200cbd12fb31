#!/usr/bin/env python3
"""Untuned TVM on CPU with edgekiln's default schedules: all-MiniLM-L6-v2 at batch 1 x seq 128 against
ONNX Runtime fp32 (and, given --old, an untuned TVM artifact built without them), interleaved, then
each TVM kernel timed alone: what dominates, and the fraction of the fp32 GEMM peak the matmuls reach.

    python benchmarks/tvm_cpu_defaults.py [--old ARTIFACT] [--threads 2] [--rounds 10] [--out DIR]

--old: an artifact compiled by an edgekiln without the default schedules (e.g. the main checkout:
`edgekiln compile MODEL -o DIR --backend tvm --sequence-buckets 128`).

    python benchmarks/tvm_cpu_defaults.py --kernels-only --onnx MODEL.onnx --database DIR [--threads 1]

prints only the kernel table, with the kernels a tuning database schedules (rule "database") taken
from DIR (a build cache's tvm-tuning/KEY folder) and the rest from the default rules.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from core_path import fp32_peak_gflops  # noqa: E402
from interleave import measure  # noqa: E402

from edgekiln.compiler import Recipe, compile  # noqa: E402
from edgekiln.compiler.quickstart import model_folder  # noqa: E402
from edgekiln.runtime import load  # noqa: E402


def build(out: Path, seq: int) -> dict[str, str]:
    built = {}
    for name, options in (
        ("onnxruntime", {"backend": "onnxruntime"}),
        ("tvm-untuned", {"backend": "tvm", "sequence_buckets": (seq,), "cache": False}),
    ):
        started = time.perf_counter()
        built[name] = str(
            compile(str(model_folder()), "host", out / name, Recipe.from_flags(**options), force=True).path
        )
        print(f"built {name} in {time.perf_counter() - started:.1f} s", flush=True)
    return built


def make_runner(name: str, spec: tuple[str, int]):
    path, threads = spec
    return load(path, threads=threads).run


def kernel_table(onnx_path: Path, seq: int, threads: int, database: Path | None = None) -> list[dict]:
    """Each kernel of the scheduled module built alone and timed (min of 5 x 10 calls) on random
    data, times its calls in `main`: [{kernel, rule, calls, ms_each, ms_total, gflops?}], slowest first."""
    import tvm

    from edgekiln.compiler.tvm_build.build import cpu_lowered
    from edgekiln.compiler.tvm_build.cpu_schedules import default_schedules, scheduled_by
    from edgekiln.compiler.tvm_build.importer import import_fixed
    from edgekiln.compiler.tvm_build.target import local_target
    from edgekiln.runtime.backends.tvm import share_cpus
    from edgekiln.targets.host import detect_host

    share_cpus(tvm, threads)  # as the runtime does
    target = local_target(detect_host())
    mod, _ = import_fixed(onnx_path, {n: [1, seq] for n in ("input_ids", "attention_mask", "token_type_ids")})
    tvm_target = tvm.target.Target(target)
    with tvm_target:
        mod = default_schedules(cpu_lowered(mod, tvm_target, target, database), tvm_target)
    rules, text, rows = scheduled_by(mod), mod.script(), []
    for gvar, func in mod.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc):
            name = gvar.name_hint
            calls = len(re.findall(rf"cls\.{re.escape(name)}\b", text))
            each = _time_kernel(func, tvm_target)
            rule = rules.get(name, "database" if func.attrs and func.attrs.get("tirx.is_scheduled") else "-")
            row = {"kernel": name, "rule": rule, "calls": calls, "ms_each": each}
            if rule == "matmul" or (rule == "database" and ("dense" in name or "matmul" in name)):
                row["gflops"] = _matmul_flop(func) / each / 1e6
            rows.append(row | {"ms_total": each * calls})
    return sorted(rows, key=lambda r: -r["ms_total"])


def _time_kernel(func, tvm_target) -> float:
    import tvm

    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=tvm_target).jit()
    args = [tvm.runtime.tensor(np.asarray(np.random.rand(*shape), dtype=dtype)) for shape, dtype in _buffers(func)]
    return float(np.min(lib.time_evaluator("main", tvm.cpu(), number=10, repeat=5)(*args).results)) * 1e3


def _buffers(func) -> list[tuple[list[int], str]]:
    """The parameters' (shape, dtype), read from the kernel's signature."""
    signature = next(line for line in func.script().splitlines() if line.strip().startswith("def "))
    found = re.findall(r'T\.Buffer\(\(((?:T\.int64\(\d+\),? ?)*)\), "(\w+)"\)', signature)
    return [([int(x) for x in re.findall(r"T\.int64\((\d+)\)", shape)], dtype) for shape, dtype in found]


def _matmul_flop(func) -> float:
    """2 x M x N x K for a matrix product: the output is the last buffer, K the first operand's last axis."""
    buffers = _buffers(func)
    return 2.0 * float(np.prod(buffers[-1][0])) * buffers[0][0][-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="edgekiln-tvmcpu-")))
    parser.add_argument("--kernels-only", action="store_true", help="only the kernel table of --onnx")
    parser.add_argument("--onnx", type=Path, help="--kernels-only: the model (an ONNX Runtime artifact's model.onnx)")
    parser.add_argument("--database", type=Path, help="--kernels-only: a MetaSchedule database folder")
    args = parser.parse_args()
    if args.kernels_only:
        _print_kernels(kernel_table(args.onnx, args.seq, args.threads, args.database), fp32_peak_gflops(args.threads))
        return

    built = build(args.out, args.seq)
    if args.old:
        built["tvm-untuned-old"] = str(args.old)
    rng = np.random.default_rng(0)
    feeds = {
        "input_ids": rng.integers(1000, 30000, (1, args.seq)).astype(np.int64),
        "attention_mask": np.ones((1, args.seq), np.int64),
        "token_type_ids": np.zeros((1, args.seq), np.int64),
    }
    specs = {name: (path, args.threads) for name, path in built.items()}
    times = measure(make_runner, specs, feeds, rounds=args.rounds, per_round=args.per_round)
    base = statistics.median(times["onnxruntime"])
    print(f"\nall-MiniLM-L6-v2, batch 1 x seq {args.seq}, {args.threads} threads, interleaved")
    rows = {}
    for name, values in times.items():
        p50, p90 = statistics.median(values), float(np.percentile(values, 90))
        rows[name] = {"p50_ms": p50, "p90_ms": p90, "vs_onnxruntime": p50 / base, "calls": len(values)}
        print(f"  {name:16s} p50 {p50:9.2f} ms  p90 {p90:9.2f} ms  {p50 / base:7.2f}x onnxruntime")
    peak = fp32_peak_gflops(args.threads)
    onnx_path = Path(built["onnxruntime"]) / "model.onnx"  # basic ONNX Runtime rewrites only: portable ONNX
    kernels = kernel_table(onnx_path, args.seq, args.threads)
    _print_kernels(kernels, peak)
    (args.out / "tvm_cpu_defaults.json").write_text(
        json.dumps({"rows": rows, "kernels": kernels, "fp32_peak_gflops": peak}, indent=2)
    )
    print(f"json: {args.out / 'tvm_cpu_defaults.json'}")


def _print_kernels(kernels: list[dict], peak: float | None) -> None:
    total = sum(r["ms_total"] for r in kernels)
    print(f"\nkernels timed alone: {total:.2f} ms in all" + (f"; fp32 GEMM peak {peak:.0f} GFLOP/s" if peak else ""))
    for r in kernels[:15]:
        gemm = ""
        if "gflops" in r:
            gemm = f"  {r['gflops']:6.1f} GFLOP/s" + (f" = {r['gflops'] / peak:5.1%} of peak" if peak else "")
        print(f"  {r['ms_total']:7.2f} ms  {r['calls']:2d} x {r['ms_each']:7.3f}  {r['rule']:9s} {r['kernel']}{gemm}")


if __name__ == "__main__":
    main()
