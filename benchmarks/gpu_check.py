#!/usr/bin/env python3
"""On a machine with an NVIDIA GPU: load the TVM CUDA artifacts that benchmarks/gpu_prepare.py built
(elsewhere, with no GPU), check their outputs against the CPU outputs computed there, and time them
beside PyTorch eager on the same GPU (same architecture, random weights: latency only). Parts:
text (BERT-shaped), image (EfficientNet-Lite0), vit (a Hugging Face ViT folder), families (13 Hugging
Face image families, outputs only).

    python benchmarks/gpu_check.py --folder .gpu [--runs 200] [--json out.json]

Needs the edgekiln runtime and TVM's runtime (no compiler: TVM_USE_RUNTIME_LIB=1 works); torch,
transformers and timm only for the PyTorch timings, which are skipped with a note where absent.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from edgekiln.runtime import load

TEXT_LENGTHS = (32, 128)


def percentiles(run, warmup: int, runs: int) -> dict:
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        run()
        times.append((time.perf_counter() - started) * 1e3)
    p50, p90, p99 = np.percentile(times, [50, 90, 99])
    return {"p50_ms": round(float(p50), 4), "p90_ms": round(float(p90), 4), "p99_ms": round(float(p99), 4)}


def compare(got: np.ndarray, expected: np.ndarray) -> dict:
    spread = float(expected.max() - expected.min()) or 1.0
    diff = float(np.abs(got - expected).max())
    return {
        "max_abs_diff": diff,
        "relative_to_range": diff / spread,
        "top1_agree": int((got.argmax(-1) == expected.argmax(-1)).sum()),
        "rows": int(expected.shape[0]),
    }


def check_text(folder: Path, runs: int) -> dict:
    session = load(folder / "text-tvm-cuda", device="cuda")
    expected = np.load(folder / "text-tvm-cuda.expected.npz", allow_pickle=False)
    meta = json.loads((folder / "text-tvm-cuda.meta.json").read_text())
    samples = []
    for number in range(meta["samples"]):
        feeds = {key.split(".", 2)[2]: expected[key] for key in expected.files if key.startswith(f"{number}.in.")}
        got = session.run(feeds)
        for name, value in got.items():
            samples.append(
                {"sample": number, "length": int(feeds["input_ids"].shape[1]), "output": name}
                | compare(value, expected[f"{number}.out.{name}"])
            )
    timings = {}
    rng = np.random.default_rng(0)
    for length in TEXT_LENGTHS:
        ids = rng.integers(5, meta["config"]["vocab_size"], size=(1, length), dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        timings[f"tvm_cuda_1x{length}"] = percentiles(lambda feeds=feeds: session.run(feeds), 20, runs)
    timings |= guarded(torch_text, meta["config"], runs)
    return {"checks": samples, "timings": timings, "predict": session.predict(["the movie was very good"])[0].label}


def check_image(folder: Path, runs: int) -> dict:
    session = load(folder / "image-tvm-cuda", device="cuda")
    expected = np.load(folder / "image-tvm-cuda.expected.npz", allow_pickle=False)
    images = expected["images"]
    name = session.manifest.outputs[0].name
    got = np.concatenate([session.run({"images": images[i : i + 1]})[name] for i in range(len(images))])
    one = {"images": images[:1]}
    timings = {"tvm_cuda_1x3x224x224": percentiles(lambda: session.run(one), 20, runs)}
    timings |= guarded(torch_image, json.loads((folder / "image-tvm-cuda.meta.json").read_text()), runs)

    checks = [{"inputs": "the same feeds"} | compare(got, expected["logits"])]
    meta = json.loads((folder / "image-tvm-cuda.meta.json").read_text())
    pictures = [folder_of_photos() / name for name in meta["photos"]]
    if all(path.exists() for path in pictures):  # the runtime's own decoding and preprocessing here
        mine = np.concatenate([session.run(session.encoder.encode([path])[0])[name] for path in pictures])
        checks.append({"inputs": "photos preprocessed here"} | compare(mine, expected["all"]))
    cat = folder_of_photos() / "chelsea.png"
    predicted = session.predict([str(cat)])[0].label if cat.exists() else None
    return {"checks": checks, "timings": timings, "cat_predicted": predicted}


def check_vit(folder: Path, runs: int) -> dict:
    session = load(folder / "vit-tvm-cuda", device="cuda")
    expected = np.load(folder / "vit-tvm-cuda.expected.npz", allow_pickle=False)
    meta = json.loads((folder / "vit-tvm-cuda.meta.json").read_text())
    images, name = expected["images"], session.manifest.outputs[0].name
    got = np.concatenate([session.run({meta["input"]: images[i : i + 1]})[name] for i in range(len(images))])
    one = {meta["input"]: images[:1]}
    timings = {"tvm_cuda_1x3x224x224": percentiles(lambda: session.run(one), 20, runs)}
    timings |= guarded(torch_vit, meta["config"], runs)
    return {"checks": [{"inputs": "the same feeds"} | compare(got, expected["logits"])], "timings": timings}


def check_families(folder: Path, runs: int) -> dict:
    """Each image family's CUDA artifact on the same feeds as PyTorch's CPU logits (no timing: tiny models)."""
    expected = np.load(folder / "families.expected.npz", allow_pickle=False)
    checks = {}
    for family in json.loads((folder / "families.meta.json").read_text())["families"]:
        try:
            session = load(folder / "families" / family, device="cuda")
            got = session.run({"pixel_values": expected[f"{family}.images"]})["logits"]
            checks[family] = compare(got, expected[f"{family}.logits"])
        except Exception as exc:  # one family's failure is reported beside the others
            checks[family] = {"error": f"{type(exc).__name__}: {exc}"}
    failed = [family for family, check in checks.items() if "error" in check]
    return {"checks": checks} | ({"error": f"failed: {failed}"} if failed else {})


def folder_of_photos() -> Path:
    try:
        import skimage.data
    except ImportError:
        return Path("/nonexistent")
    return Path(skimage.data.__file__).parent


def guarded(timer, *args) -> dict:
    """PyTorch's side is a comparison: its failure is reported, not allowed to hide the check."""
    try:
        return timer(*args)
    except Exception as exc:
        return {"pytorch": f"failed: {type(exc).__name__}: {exc}"}


def _torch_timer(model, inputs, runs: int) -> dict:
    import torch

    def run():
        with torch.inference_mode():
            model(**inputs) if isinstance(inputs, dict) else model(inputs)
        torch.cuda.synchronize()

    return percentiles(run, 20, runs)


def torch_text(config: dict, runs: int) -> dict:
    try:
        import torch
        import transformers
    except ImportError as exc:
        return {"pytorch": f"skipped: {exc}"}
    model = transformers.BertForSequenceClassification(transformers.BertConfig(**config)).eval().cuda()
    out = {}
    for length in TEXT_LENGTHS:
        ids = torch.randint(5, config["vocab_size"], (1, length), device="cuda")
        inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}
        out[f"pytorch_cuda_eager_1x{length}"] = _torch_timer(model, inputs, runs)
    return out


def torch_image(meta: dict, runs: int) -> dict:
    try:
        import timm
        import torch
    except ImportError as exc:
        return {"pytorch": f"skipped: {exc}"}
    model = timm.create_model(meta["timm"], pretrained=False).eval().cuda()
    images = torch.randn(1, 3, 224, 224, device="cuda")
    return {"pytorch_cuda_eager_1x3x224x224": _torch_timer(model, images, runs)}


def torch_vit(config: dict, runs: int) -> dict:
    try:
        import torch
        import transformers
    except ImportError as exc:
        return {"pytorch": f"skipped: {exc}"}
    model = transformers.ViTForImageClassification(transformers.ViTConfig(**config)).eval().cuda()
    images = torch.randn(1, 3, 224, 224, device="cuda")
    return {"pytorch_cuda_eager_1x3x224x224": _torch_timer(model, {"pixel_values": images}, runs)}


def environment() -> dict:
    info = {"python": platform.python_version(), "machine": platform.machine()}
    try:
        import torch

        info |= {"torch": torch.__version__, "gpu": torch.cuda.get_device_name(0)}
    except Exception as exc:  # the check itself needs no torch
        info["torch"] = f"unavailable: {exc}"
    import onnxruntime
    import tvm

    info["tvm"] = tvm.__version__
    info["onnxruntime"] = f"{onnxruntime.__version__} {onnxruntime.get_available_providers()}"
    return info


PARTS = {"text": check_text, "image": check_image, "vit": check_vit, "families": check_families}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path(".gpu"))
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", nargs="+", choices=PARTS, help="the parts to check (default: all)")
    args = parser.parse_args()
    results = {"environment": environment()}
    for kind, check in PARTS.items():
        if args.only and kind not in args.only:
            continue
        try:
            results[kind] = check(args.folder, args.runs)
        except Exception as exc:  # report every part, then fail
            results[kind] = {"error": f"{type(exc).__name__}: {exc}"}
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    return 1 if any("error" in part for part in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
