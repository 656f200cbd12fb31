"""A tuning database carried between machines: tuned vs imported-then-untuned vs untuned TVM builds.

Builds an ONNX MLP, compiles it with --tune-trials in one cache, exports that cache's database with
`edgekiln tune-db export`, imports it into a second (empty) cache, compiles there with no trials,
compiles once more in a third empty cache (untuned), and prints each artifact's median latency.

    python benchmarks/tune_db.py [--trials 64] [--hidden 512] [--batch 8] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np


def mlp(path: Path, width: int, hidden: int) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = rng.standard_normal((width, hidden)).astype(np.float32) * 0.05
    w2 = rng.standard_normal((hidden, width)).astype(np.float32) * 0.05
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", width])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", width])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def build(model: Path, out: Path, cache: Path, trials: int) -> tuple[Path, dict, float]:
    from edgekiln.compiler import Recipe, compile

    start = time.perf_counter()
    recipe = Recipe.from_flags(backend="tvm", tune_trials=trials, cache_dir=str(cache))
    result = compile(model, "x86-64-avx2", out, recipe, force=True)
    seconds = time.perf_counter() - start
    details = json.loads((result.path / "reports" / "lower_tvm.json").read_text())["details"]
    return result.path, details, seconds


def latency_ms(artifact: Path, x: np.ndarray, runs: int) -> float:
    from edgekiln.runtime import load

    model = load(artifact)
    for _ in range(5):
        model.run({"x": x})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.run({"x": x})
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    from edgekiln.cli.main import main as cli

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1, help="rows per request (the profile's batch bucket is 1)")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("/tmp/edgekiln-tune-db-bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = args.out / "mlp.onnx"
    mlp(model, args.width, args.hidden)
    x = np.random.default_rng(1).standard_normal((args.batch, args.width)).astype(np.float32)

    rows = []
    tuned = build(model, args.out / "tuned", args.out / "cache-tuned", args.trials)
    exported = args.out / "tuning.json"
    cache = ["--cache-dir", str(args.out / "cache-imported")]
    assert (
        cli(
            [
                "tune-db",
                "export",
                "--target",
                "x86-64-avx2",
                "-o",
                str(exported),
                "--cache-dir",
                str(args.out / "cache-tuned"),
            ]
        )
        == 0
    )
    assert cli(["tune-db", "import", str(exported), *cache]) == 0
    imported = build(model, args.out / "imported", args.out / "cache-imported", 0)
    untuned = build(model, args.out / "untuned", args.out / "cache-untuned", 0)
    for name, (artifact, details, seconds) in [("tuned", tuned), ("imported", imported), ("untuned", untuned)]:
        database = details["tuning_database"] or {"kernels_from_database": 0, "kernels": "?"}
        rows.append(
            (
                name,
                details["tune_trials"],
                f"{database['kernels_from_database']}/{database['kernels']}",
                seconds,
                latency_ms(artifact, x, args.runs),
            )
        )
    print(f"\nMLP {args.width}x{args.hidden}x{args.width}, batch {args.batch}, x86-64-avx2, {args.trials} trials")
    print(f"{'build':<10}{'trials':>8}{'kernels from db':>17}{'compile s':>11}{'median ms':>11}")
    for name, trials, kernels, seconds, ms in rows:
        print(f"{name:<10}{trials:>8}{kernels:>17}{seconds:>11.1f}{ms:>11.4f}")


if __name__ == "__main__":
    main()
