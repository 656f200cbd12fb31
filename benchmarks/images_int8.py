#!/usr/bin/env python3
"""Static int8 for a real CNN (issue 13's EfficientNet-Lite0 part, issue 12's raw-tensor part): fp32 and
static-int8 artifacts side by side on each backend, timed in interleaved rounds (one process each,
batch 1, 224x224), and top-1 agreement of int8 against fp32 on real images.

    python benchmarks/images_int8.py [--threads 2] [--rounds 10] [--out DIR] [--reuse]

`--reuse` times and scores the artifacts a previous run left in `--out` again (a repeat under another load).

Real images: the 26 scikit-image photos, plus seeded augmentations of them (random resized crop of
25-100 % of the area, aspect 3/4-4/3, horizontal flip): 4 per photo for calibration (104, written to
a folder for `--calibration`), 20 more per photo for agreement (26 + 520 = 546). The raw-tensor row
compiles the fp32 artifact's ONNX file as a plain ONNX model with `--calibration calib.npz` (the same
104 tensors) and compares it with that ONNX file's own fp32 build. Agreement is also given on the
images whose fp32 top-1 is confident (margin >= 0.1 between the two highest probabilities).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from edgekiln.compiler import Recipe, compile
from edgekiln.runtime import load
from edgekiln.runtime.interleave import measure

sys.path.insert(0, str(Path(__file__).parent))
from images_real import LABELS, SPEC, efficientnet_lite0, photos  # noqa: E402


def augment(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    width, height = image.size
    for _ in range(10):
        area = rng.uniform(0.25, 1.0) * width * height
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        w, h = int(round((area * ratio) ** 0.5)), int(round((area / ratio) ** 0.5))
        if 0 < w <= width and 0 < h <= height:
            x, y = rng.integers(0, width - w + 1), rng.integers(0, height - h + 1)
            image = image.crop((x, y, x + w, y + h))
            break
    return image.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else image


def augmented(per_photo: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    images = []
    for path in photos():
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        images.extend(augment(image, rng) for _ in range(per_photo))
    return images


def build(reuse: bool, source, folder: Path, recipe: Recipe) -> Path:
    """Compile `source` into `folder`, or with --reuse take the artifact a previous run left there."""
    if reuse and (folder / "manifest.json").is_file():
        return folder
    return compile(source, "host", folder, recipe, force=True).path


def open_artifact(name: str, spec):
    path, threads = spec
    session = load(path, threads=threads)
    return session.run


def agreement(fp32: np.ndarray, int8: np.ndarray) -> dict:
    same = fp32.argmax(-1) == int8.argmax(-1)
    probs = np.exp(fp32 - fp32.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    top = np.sort(probs, -1)
    confident = (top[:, -1] - top[:, -2]) >= 0.1
    cosine = (fp32 * int8).sum(-1) / np.linalg.norm(fp32, axis=-1) / np.linalg.norm(int8, axis=-1)
    return {
        "top1_agreement": f"{same.sum()}/{len(same)} = {same.mean() * 100:.1f} %",
        "photos_only": f"{same[:26].sum()}/26",
        "confident_fp32": f"{same[confident].sum()}/{confident.sum()} = {same[confident].mean() * 100:.1f} %",
        "logit_cosine_median": round(float(np.median(cosine)), 4),
    }


def logits(path: Path, tensors: np.ndarray) -> np.ndarray:
    session = load(path, threads=2)
    name = session.manifest.inputs[0].name
    return np.concatenate(
        [next(iter(session.run({name: tensors[i : i + 16]}).values())) for i in range(0, len(tensors), 16)]
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--reuse", action="store_true", help="reuse the artifacts already in --out")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="edgekiln-int8-"))
    calibration = out / "calibration"
    calibration.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(augmented(4, 1)):
        image.save(calibration / f"{index:03d}.png")
    model = efficientnet_lite0()
    builds: dict[str, tuple[Path, Path]] = {}

    for backend in ("onnxruntime", "openvino"):
        common = dict(backend=backend, image=SPEC, labels=LABELS, cache=False)
        fp32 = build(args.reuse, model, out / f"{backend}-fp32", Recipe.from_flags(**common))
        recipe = Recipe.from_flags(**common, quantize="static", calibration=str(calibration), calibration_samples=104)
        builds[backend] = (fp32, build(args.reuse, model, out / f"{backend}-int8", recipe))
    session = load(builds["onnxruntime"][0])
    encode = session.encoder.encode
    tensors = np.concatenate([encode(photos())[0]["images"]] + [encode(augmented(20, 2))[0]["images"]])
    calib = encode(sorted(calibration.iterdir()))[0]["images"]
    np.savez(out / "calib.npz", images=calib)
    onnx_file = builds["onnxruntime"][0] / session.manifest.model_file
    raw = dict(backend="onnxruntime", cache=False)
    builds["raw-tensor onnxruntime"] = (
        build(args.reuse, str(onnx_file), out / "raw-fp32", Recipe.from_flags(**raw)),
        build(
            args.reuse,
            str(onnx_file),
            out / "raw-int8",
            Recipe.from_flags(**raw, quantize="static", calibration=str(out / "calib.npz")),
        ),
    )
    one = {"images": tensors[:1]}
    results = {"load_before": os.getloadavg()}
    for name, (fp32, int8) in builds.items():
        times = measure(
            open_artifact, {"fp32": (fp32, args.threads), "int8": (int8, args.threads)}, one, rounds=args.rounds
        )
        p50 = {key: float(np.median(value)) for key, value in times.items()}
        results[name] = {
            "fp32_p50_ms": round(p50["fp32"], 2),
            "int8_p50_ms": round(p50["int8"], 2),
            "speedup": round(p50["fp32"] / p50["int8"], 2),
            **agreement(logits(fp32, tensors), logits(int8, tensors)),
            "load": os.getloadavg(),
        }
        print(name, json.dumps(results[name]), flush=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
