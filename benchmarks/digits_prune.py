#!/usr/bin/env python3
"""Pruning an image classifier from image data, with recovery, through the CLI (issue 13): scikit-learn's
handwritten digits (1,797 real 8x8 scans) as 64x64 RGB PNG folders, one sub-folder per class.

    nice python benchmarks/digits_prune.py [--flops 0.4] [--epochs 12] [--recover-epochs 3] [--multiple N] [--out DIR]

The script builds a small random-weight Hugging Face ResNet (transformers' ResNetConfig: basic blocks,
widths 32/64/128) with a ViT-style image processor (exact 64x64, mean/std 0.5), trains it with plain
torch on a stratified 80 % train split (its inputs made by the runtime's own image preprocessing) and
saves it as a Hugging Face folder. Then, as a user would, with the CLI: an unpruned fp32 build, and a
build with `--prune-flops F --prune-importance taylor --data train/ --recover` (recovery distils from the
unpruned model on train/, best epoch chosen on a held-out 10 % of it). Both artifacts are scored by the
runtime on the 20 % test split, which neither the training nor the pruning saw.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZE = 64
LABELS = tuple(str(i) for i in range(10))


def write_folders(root: Path, seed: int) -> tuple[Path, Path]:
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    index = np.arange(len(data.target))
    train, test = train_test_split(index, test_size=0.2, stratify=data.target, random_state=seed)
    for name, part in (("train", train), ("test", test)):
        for i in part:
            folder = root / name / str(data.target[i])
            folder.mkdir(parents=True, exist_ok=True)
            pixels = np.stack([(data.images[i] * 255 / 16).astype(np.uint8)] * 3, axis=-1)
            Image.fromarray(pixels).resize((SIZE, SIZE), Image.Resampling.BILINEAR).save(folder / f"{i}.png")
    return root / "train", root / "test"


def hf_resnet(seed: int):
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    labels = dict(enumerate(LABELS))
    config = tf.ResNetConfig(
        embedding_size=32, hidden_sizes=[32, 64, 128], depths=[1, 1, 1], layer_type="basic",
        num_labels=10, id2label=labels, label2id={v: k for k, v in labels.items()},
    )  # fmt: skip
    processor = tf.ViTImageProcessor(size={"height": SIZE, "width": SIZE}, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    return tf.ResNetForImageClassification(config), processor


def tensors(folder: Path, spec):
    from edgekiln.compiler.data import load_dataset
    from edgekiln.compiler.evaluate.predictors import image_encoder

    data = load_dataset(str(folder))
    feeds, _ = image_encoder(spec).encode([e.path for e in data.examples])
    return feeds[spec.input], np.asarray([int(e.label) for e in data.examples])


def train(model, x: np.ndarray, y: np.ndarray, epochs: int, seed: int):
    import torch

    torch.manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=epochs * ((len(x) + 31) // 32))
    xs, ys = torch.from_numpy(x), torch.from_numpy(y).long()
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xs), generator=generator)
        total = 0.0
        for start in range(0, len(xs), 32):
            batch = order[start : start + 32]
            loss = torch.nn.functional.cross_entropy(model(pixel_values=xs[batch]).logits, ys[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        print(f"epoch {epoch + 1}/{epochs}: train loss {total / len(xs):.4f}", flush=True)
    return model.eval()


def cli_compile(model: Path, out: Path, extra: list[str]) -> tuple[str, float]:
    edgekiln = str(Path(sys.executable).with_name("edgekiln"))
    command = [edgekiln, "compile", str(model), "-o", str(out), "--force", "--no-cache", *extra]
    print("$", " ".join(command), flush=True)
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return " ".join(command), time.perf_counter() - started


def artifact_accuracy(artifact: Path, folder: Path) -> tuple[float, np.ndarray]:
    from edgekiln.compiler.data import load_dataset
    from edgekiln.runtime import load

    session = load(artifact)
    data = load_dataset(str(folder))
    top = [answer.label for start in range(0, len(data), 64) for answer in session.predict(
        [e.path for e in data.examples[start : start + 64]]
    )]  # fmt: skip
    gold = [e.label for e in data.examples]
    return 100 * float(np.mean([a == b for a, b in zip(top, gold)])), np.asarray(top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flops", type=float, default=0.4)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--recover-epochs", type=int, default=3)
    parser.add_argument(
        "--multiple", type=int, help="conv widths rounded to this multiple (default: the target profile's)"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or Path(tempfile.mkdtemp(prefix="edgekiln-digits-prune-"))
    out.mkdir(parents=True, exist_ok=True)
    train_dir, test_dir = write_folders(out / "digits", args.seed)
    model, processor = hf_resnet(args.seed)
    folder = out / "resnet-digits"
    processor.save_pretrained(folder)
    from edgekiln.compiler.sources.hf_image import image_spec

    spec = image_spec(folder)
    started = time.perf_counter()
    train(model, *tensors(train_dir, spec), args.epochs, args.seed).save_pretrained(folder)
    results: dict = {"train_seconds": round(time.perf_counter() - started, 1)}
    command, seconds = cli_compile(folder, out / "fp32", [])
    results["fp32"] = {"command": command, "build_seconds": round(seconds, 1)}
    results["fp32"]["test_accuracy"], fp32_top = artifact_accuracy(out / "fp32", test_dir)
    prune = ["--prune-flops", str(args.flops), "--prune-importance", "taylor", "--data", str(train_dir)]
    prune += ["--recover", "--recover-epochs", str(args.recover_epochs)]
    if args.multiple is not None:
        recipe = out / "prune.toml"
        recipe.write_text(f"[prune]\nmultiple_of = {args.multiple}\n")
        prune += ["--recipe", str(recipe)]
    command, seconds = cli_compile(folder, out / "pruned", prune)
    report = json.loads((out / "pruned" / "reports" / "pruning.json").read_text())
    accuracy, top = artifact_accuracy(out / "pruned", test_dir)
    results["pruned"] = {
        "command": command,
        "build_seconds": round(seconds, 1),
        "prune_seconds": report["seconds"],
        "recovery_seconds": report["recovery"]["seconds"],
        "flops_reduction": round(report["flops_reduction"], 4),
        "multiple_of": report["config"]["multiple_of"],
        "macs": report["macs"],
        "parameters": report["parameters"],
        "held_out_accuracy": {
            k: report[k] for k in ("accuracy_before", "accuracy_after_pruning", "accuracy_after_recovery")
        },
        "test_accuracy": accuracy,
        "test_agreement_with_fp32": 100 * float(np.mean(top == fp32_top)),
        "layers": report["layers"],
    }
    results["test_images"] = len(top)
    results["load"] = os.getloadavg()
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
