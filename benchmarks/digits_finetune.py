#!/usr/bin/env python3
"""Fine-tune -> prune -> int8 of an image classifier, every step through the CLI (issue 13's digits
legs): scikit-learn's handwritten digits (1,797 real 8x8 scans), written as PNG image folders.

    nice python benchmarks/digits_finetune.py [--out DIR] [--arch resnet|mobilenetv2] [--epochs 10]
        [--threads 2] [--seed 0] [--size 32] [--prune-flops 0.4] [--reuse]

Steps, each left in --out for the legs that follow (prune, int8):
  DIR/data/train/<digit>/*.png, DIR/data/test/<digit>/*.png  a stratified, seeded 80/20 split, the 8x8
      scans upscaled (bilinear) to --size pixels, greyscale PNG (the runtime decodes them to RGB);
  DIR/base/       a small random-init Hugging Face CNN (transformers config + preprocessor_config.json):
      ResNet (measured in benchmarks/README.md), or MobileNetV2 (runs; its first epoch took 92 s here
      against ResNet's 41 s, and it was at 38 % after it: not measured to convergence);
  DIR/tuned/      `edgekiln finetune DIR/base --train DIR/data/train` (10 % of the train split held out
      for picking the best epoch; the test split is never seen), mild augmentation, no flips;
  DIR/eval.json   `edgekiln eval DIR/tuned --data DIR/data/test`;
  DIR/fp32, DIR/pruned, DIR/pruned-int8-{onnxruntime,openvino}  `edgekiln compile DIR/tuned`: as is;
      with `--prune-flops F --prune-importance taylor --data DIR/data/train --recover`; and the same
      pruned model (from the pass cache) with `--quantize static --calibration DIR/data/train` on each
      backend; each scored by `edgekiln eval ART --data DIR/data/test --against DIR/fp32`;
  DIR/summary.json  test accuracy and agreement of every step, epochs, seconds.
--reuse keeps DIR/data and DIR/tuned from an earlier run and redoes only the compile legs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CLI = [sys.executable, "-m", "edgekiln.cli.main"]


def write_digits(folder: Path, size: int, seed: int) -> dict[str, int]:
    """FOLDER/train and FOLDER/test as image folders (one sub-folder per digit); their sizes."""
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    indices = np.arange(len(data.target))
    train, test = train_test_split(indices, test_size=0.2, stratify=data.target, random_state=seed)
    shutil.rmtree(folder, ignore_errors=True)
    for split, chosen in (("train", train), ("test", test)):
        for index in chosen:
            pixels = np.round(data.images[index] * (255 / 16)).astype(np.uint8)
            target = folder / split / str(data.target[index])
            target.mkdir(parents=True, exist_ok=True)
            image = Image.fromarray(pixels, mode="L").resize((size, size), Image.Resampling.BILINEAR)
            image.save(target / f"{index:04d}.png")
    return {"train": len(train), "test": len(test)}


def make_base(folder: Path, arch: str, size: int, seed: int) -> Path:
    """A random-init transformers CNN with digit labels and a plain resize/normalise processor."""
    import torch
    import transformers as tf

    labels = {i: str(i) for i in range(10)}
    common = {"num_labels": 10, "id2label": labels, "label2id": {v: k for k, v in labels.items()}}
    torch.manual_seed(seed)
    if arch == "resnet":
        config = tf.ResNetConfig(
            embedding_size=32,
            hidden_sizes=[32, 64, 128],
            depths=[1, 1, 1],
            layer_type="basic",
            downsample_in_first_stage=False,
            **common,
        )
        model = tf.ResNetForImageClassification(config)
    else:
        config = tf.MobileNetV2Config(depth_multiplier=0.5, image_size=size, **common)
        model = tf.MobileNetV2ForImageClassification(config)
    processor = tf.ViTImageProcessor(
        size={"height": size, "width": size}, image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]
    )
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def cli(*args: str) -> float:
    """Run `edgekiln ARGS`; its wall seconds."""
    print("$ edgekiln " + " ".join(args), flush=True)
    started = time.perf_counter()
    subprocess.run([*CLI, *args], check=True)
    return time.perf_counter() - started


def finetune(out: Path, args) -> dict:
    counts = write_digits(out / "data", args.size, args.seed)
    base = make_base(out / "base", args.arch, args.size, args.seed)
    seconds = cli(
        "finetune", str(base), "--train", str(out / "data" / "train"), "-o", str(out / "tuned"), "--force",
        "--epochs", str(args.epochs), "--lr", args.lr, "--batch-size", args.batch_size,
        "--crop-scale", args.crop_scale, "--no-flip", "--seed", str(args.seed), "--threads", args.threads,
    )  # fmt: skip
    cli("eval", str(out / "tuned"), "--data", str(out / "data" / "test"), "--json", str(out / "eval.json"))
    report = json.loads((out / "tuned" / "train_report.json").read_text())
    test = json.loads((out / "eval.json").read_text())
    return {
        "arch": args.arch,
        "parameters": report["parameters"]["total"],
        "images": counts,
        "size": args.size,
        "epochs": args.epochs,
        "best_epoch": report["best_epoch"],
        "dev_accuracy": report["best_metric"],
        "test_accuracy": test["accuracy"],
        "test_top5_accuracy": test["top5_accuracy"],
        "finetune_seconds": round(seconds, 1),
        "train_seconds": report["train_seconds"],
        "threads": int(args.threads),
        "settings": {"lr": args.lr, "batch_size": args.batch_size, "crop_scale": args.crop_scale, "flip": False},
    }


def compile_legs(out: Path, flops: float) -> dict:
    """fp32, pruned (+ recovery), pruned + static int8 on each backend: built and scored by the CLI."""
    train, test = str(out / "data" / "train"), str(out / "data" / "test")
    prune = ["--prune-flops", str(flops), "--prune-importance", "taylor", "--data", train, "--recover"]
    int8 = ["--quantize", "static", "--calibration", train]
    legs = {
        "fp32": [],
        "pruned": prune,
        "pruned-int8-onnxruntime": [*prune, *int8],
        "pruned-int8-openvino": [*prune, *int8, "--backend", "openvino"],
    }
    results = {}
    for name, flags in legs.items():
        seconds = cli("compile", str(out / "tuned"), "-o", str(out / name), "--force", *flags)
        scores = out / f"eval-{name}.json"
        against = [] if name == "fp32" else ["--against", str(out / "fp32")]
        cli("eval", str(out / name), "--data", test, "--json", str(scores), *against)
        results[name] = _scores(json.loads(scores.read_text()), seconds)
        pruning = out / name / "reports" / "pruning.json"
        if pruning.is_file():
            results[name]["flops_reduction"] = round(json.loads(pruning.read_text())["flops_reduction"], 4)
    return results


def _scores(report: dict, seconds: float) -> dict:
    found = {"test_accuracy": report["accuracy"], "build_seconds": round(seconds, 1)}
    if "agreement" in report:
        found["agreement_with_fp32"] = report["agreement"]
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("digits-finetune"))
    parser.add_argument("--arch", choices=("resnet", "mobilenetv2"), default="resnet")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", default="3e-3")
    parser.add_argument("--batch-size", default="32")
    parser.add_argument("--crop-scale", default="0.6", help="smallest random crop, as a fraction of the area")
    parser.add_argument("--threads", default=str(min(os.cpu_count() or 1, 4)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--prune-flops", type=float, default=0.4)
    parser.add_argument("--reuse", action="store_true", help="keep DIR/data and DIR/tuned; redo the compile legs")
    args = parser.parse_args()

    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    summary_file = out / "summary.json"
    reuse = args.reuse and summary_file.is_file()
    summary = json.loads(summary_file.read_text()) if reuse else finetune(out, args)
    summary["builds"] = compile_legs(out, args.prune_flops)
    summary["load"] = os.getloadavg()
    summary_file.write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary["builds"], indent=2))
    print(
        f"\n{summary['arch']} ({summary['parameters']:,} parameters, random init) on {summary['images']['train']} "
        f"train digits: fine-tuned test accuracy {summary['test_accuracy']:.2%} "
        f"({summary['finetune_seconds']:.0f} s for `edgekiln finetune`); left in {out}"
    )


if __name__ == "__main__":
    main()
