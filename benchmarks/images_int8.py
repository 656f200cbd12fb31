#!/usr/bin/env python3
"""Static int8 for a real CNN (issue 13's EfficientNet-Lite0 part, issue 12's raw-tensor part): fp32 and
static-int8 artifacts side by side on each backend, timed in interleaved rounds (one process each,
batch 1, 224x224), and top-1 agreement of int8 against fp32 on real images that calibration never saw.

    pip install -e '.[image-model,bench-images]'
    python benchmarks/images_int8.py [--threads 2] [--rounds 10] [--out DIR] [--reuse]

`--reuse` times and scores the artifacts a previous run left in `--out` again (a repeat under another load).

Real images (photos from PyPI packages; augmentation = a seeded random resized crop of 25-100 % of the
area, aspect 3/4-4/3, and a horizontal flip half the time):
- calibration: the 130 street and cat photos of AI Benchmark (`ai-benchmark`, Apache-2.0: its
  enhancement and segmentation photos), each as it is and augmented once (260), written to a folder for
  `--calibration`;
- "imagenet": AI Benchmark's 100 classification photos (animals, birds, vehicles, objects: ImageNet's
  kind of subject), each as it is and augmented 5 times (600): the issue's agreement set;
- "scikit-image": scikit-image's 26 photos, each as it is and augmented 20 times (546), mostly not
  ImageNet scenes (text, a checkerboard, grey-scale crops): fp32's margins are small, a stress set.
The raw-tensor row compiles the fp32 artifact's ONNX file as a plain ONNX model with
`--calibration calib.npz` (the same 260 tensors) and compares it with that ONNX file's own fp32 build.
Agreement is also given on the images whose fp32 top-1 is confident (margin >= 0.1 between the two
highest probabilities).
"""

from __future__ import annotations

import argparse
import importlib.util
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


def augmented(paths: list[Path], per_photo: int, seed: int) -> list[Image.Image]:
    """Each photo as it is, then `per_photo` seeded augmentations of it."""
    rng = np.random.default_rng(seed)
    images = []
    for path in paths:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        images.extend([image] + [augment(image, rng) for _ in range(per_photo)])
    return images


def ai_benchmark(kind: str) -> list[Path]:
    """AI Benchmark's photos: "classification" (100), "enhancement" (100 street scenes), "segmentation"
    (30 photos of cats; their `_segmented` overlays left out)."""
    spec = importlib.util.find_spec("ai_benchmark")  # located, not imported: only its data is used
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("this benchmark's photos come with ai-benchmark: pip install -e '.[bench-images]'")
    folder = Path(spec.submodule_search_locations[0]) / "data" / kind
    return sorted((p for p in folder.glob("*.jpg") if p.stem.isdigit()), key=lambda p: int(p.stem))


def build(reuse: bool, source, folder: Path, recipe: Recipe) -> Path:
    """Compile `source` into `folder`, or with --reuse take the artifact a previous run left there."""
    if reuse and (folder / "manifest.json").is_file():
        return folder
    return compile(source, "host", folder, recipe, force=True).path


def open_artifact(name: str, spec):
    path, threads = spec
    session = load(path, threads=threads)
    return session.run


def agreement(fp32: np.ndarray, int8: np.ndarray, originals: np.ndarray) -> dict:
    same = fp32.argmax(-1) == int8.argmax(-1)
    probs = np.exp(fp32 - fp32.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    top = np.sort(probs, -1)
    confident = (top[:, -1] - top[:, -2]) >= 0.1
    cosine = (fp32 * int8).sum(-1) / np.linalg.norm(fp32, axis=-1) / np.linalg.norm(int8, axis=-1)
    return {
        "top1_agreement": f"{same.sum()}/{len(same)} = {same.mean() * 100:.1f} %",
        "photos_unaugmented": f"{same[originals].sum()}/{originals.sum()}",
        "confident_fp32": f"{same[confident].sum()}/{confident.sum()} = {same[confident].mean() * 100:.1f} %",
        "logit_cosine_median": round(float(np.median(cosine)), 4),
    }


def logits(path: Path, tensors: np.ndarray) -> np.ndarray:
    session = load(path, threads=2)
    name = session.manifest.inputs[0].name
    return np.concatenate(
        [next(iter(session.run({name: tensors[i : i + 16]}).values())) for i in range(0, len(tensors), 16)]
    )


def write_calibration(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    street_and_cats = ai_benchmark("enhancement") + ai_benchmark("segmentation")
    images = augmented(street_and_cats, 1, seed=1)
    for index, image in enumerate(images):
        image.save(folder / f"{index:03d}.png")
    return len(images)


def agreement_sets(encode) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (tensors, which rows are photos as they are)."""
    sets = {}
    for name, paths, per_photo in (
        ("imagenet", ai_benchmark("classification"), 5),
        ("scikit-image", photos(), 20),
    ):
        tensors = encode(augmented(paths, per_photo, seed=2))[0]["images"]
        sets[name] = (tensors, np.arange(len(tensors)) % (per_photo + 1) == 0)
    return sets


def build_all(reuse: bool, out: Path, calibration: Path, samples: int) -> dict[str, tuple[Path, Path]]:
    model = efficientnet_lite0()
    builds = {}
    for backend in ("onnxruntime", "openvino"):
        common = dict(backend=backend, image=SPEC, labels=LABELS, cache=False)
        fp32 = build(reuse, model, out / f"{backend}-fp32", Recipe.from_flags(**common))
        recipe = Recipe.from_flags(
            **common, quantize="static", calibration=str(calibration), calibration_samples=samples
        )
        builds[backend] = (fp32, build(reuse, model, out / f"{backend}-int8", recipe))
    session = load(builds["onnxruntime"][0])
    np.savez(out / "calib.npz", images=session.encoder.encode(sorted(calibration.iterdir()))[0]["images"])
    onnx_file = str(builds["onnxruntime"][0] / session.manifest.model_file)
    raw = dict(backend="onnxruntime", cache=False)
    int8 = Recipe.from_flags(**raw, quantize="static", calibration=str(out / "calib.npz"), calibration_samples=samples)
    builds["raw-tensor onnxruntime"] = (
        build(reuse, onnx_file, out / "raw-fp32", Recipe.from_flags(**raw)),
        build(reuse, onnx_file, out / "raw-int8", int8),
    )
    return builds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--reuse", action="store_true", help="reuse the artifacts already in --out")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="edgekiln-int8-"))
    samples = write_calibration(out / "calibration")
    builds = build_all(args.reuse, out, out / "calibration", samples)
    sets = agreement_sets(load(builds["onnxruntime"][0]).encoder.encode)
    one = {"images": sets["imagenet"][0][:1]}
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
            **{
                set_name: agreement(logits(fp32, tensors), logits(int8, tensors), originals)
                for set_name, (tensors, originals) in sets.items()
            },
            "load": os.getloadavg(),
        }
        print(name, json.dumps(results[name]), flush=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
