#!/usr/bin/env python3
"""Static int8 through the raw-tensor path on real labelled images where a CNN is confident (issue 12):
scikit-learn's handwritten digits (1,797 real 8x8 scans), upsampled to 32x32.

    nice python benchmarks/digits_int8.py [--threads 2] [--rounds 10] [--epochs 6] [--out DIR]

The script trains a small CNN (seeded, torch CPU; 4 conv layers of 48-192 channels with BatchNorm and
ReLU, about 170 M multiply-adds a call) on a stratified 80 % train split, exports it with torch.onnx and
writes `train.npz` / `test.npz` (input `x`, float32 N x 1 x 32 x 32 in [0, 1]). Then it compiles the ONNX
file as a user would, with the CLI, once in fp32 and once with `--quantize static --calibration
train.npz`, for ONNX Runtime and for OpenVINO. Per backend: fp32 against int8 timed interleaved in one
run (batch 1, one process each), top-1 agreement of int8 against fp32 on the held-out test digits, and
both artifacts' test accuracy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from edgekiln.runtime.interleave import measure

sys.path.insert(0, str(Path(__file__).parent))
from images_int8 import agreement, logits, open_artifact  # noqa: E402

SIZE = 32
SHAPE = f"x:[1..16]x1x{SIZE}x{SIZE}"  # batch 1 is timed; batches of up to 16 score the test split


def digits(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified 80/20 split of the 1,797 digits, upsampled (bilinear) to SIZE x SIZE in [0, 1]."""
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = torch.from_numpy(data.images.astype(np.float32) / 16.0)[:, None]
    images = torch.nn.functional.interpolate(images, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    x_train, x_test, y_train, y_test = train_test_split(
        images.numpy(), data.target, test_size=0.2, stratify=data.target, random_state=seed
    )
    return x_train, x_test, y_train, y_test


def network():
    import torch.nn as nn

    def block(cin: int, cout: int) -> list:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(1, 48), *block(48, 96), nn.MaxPool2d(2),  # 32 -> 16
        *block(96, 192), *block(192, 192), nn.MaxPool2d(2),  # 16 -> 8
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(192, 10),
    )  # fmt: skip


def train(x: np.ndarray, y: np.ndarray, epochs: int, seed: int):
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(2)
    model = network()
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
            loss = torch.nn.functional.cross_entropy(model(xs[batch]), ys[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(batch)
        print(f"epoch {epoch + 1}/{epochs}: train loss {total / len(xs):.4f}", flush=True)
    return model.eval()


def export(model, path: Path) -> None:
    import torch

    example = torch.zeros(2, 1, SIZE, SIZE)
    batch = torch.export.Dim("batch", min=1, max=16)
    torch.onnx.export(
        model, (example,), str(path), input_names=["x"], output_names=["logits"],
        dynamic_shapes=({0: batch},), dynamo=True, external_data=False, verbose=False,
    )  # fmt: skip


def cli_compile(onnx_file: Path, out: Path, backend: str, extra: list[str]) -> tuple[list[str], Path]:
    """The build a user would run; returns the command and the artifact folder."""
    edgekiln = str(Path(sys.executable).with_name("edgekiln"))
    command = [edgekiln, "compile", str(onnx_file), "-o", str(out), "--force", "--backend", backend]
    command += ["--input-shape", SHAPE, "--no-cache", *extra]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)
    return command, out


def accuracy(scores: np.ndarray, labels: np.ndarray) -> str:
    right = int((scores.argmax(-1) == labels).sum())
    return f"{right}/{len(labels)} = {right / len(labels) * 100:.2f} %"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="edgekiln-digits-"))
    out.mkdir(parents=True, exist_ok=True)
    x_train, x_test, y_train, y_test = digits(args.seed)
    model = train(x_train, y_train, args.epochs, args.seed)
    import torch

    with torch.no_grad():
        torch_test = model(torch.from_numpy(x_test)).numpy()
    results: dict = {"train": len(x_train), "test": len(x_test), "torch_test_accuracy": accuracy(torch_test, y_test)}
    print(json.dumps(results), flush=True)
    onnx_file = out / "digits_cnn.onnx"
    export(model, onnx_file)
    np.savez(out / "train.npz", x=x_train)
    np.savez(out / "test.npz", x=x_test)
    calibrate = ["--quantize", "static", "--calibration", str(out / "train.npz"), "--calibration-samples", "256"]
    one = {"x": x_test[:1]}
    for backend in ("onnxruntime", "openvino"):
        fp32_command, fp32 = cli_compile(onnx_file, out / f"{backend}-fp32", backend, [])
        int8_command, int8 = cli_compile(onnx_file, out / f"{backend}-int8", backend, calibrate)
        load_before = os.getloadavg()
        times = measure(
            open_artifact, {"fp32": (fp32, args.threads), "int8": (int8, args.threads)}, one, rounds=args.rounds
        )
        p50 = {key: float(np.median(value)) for key, value in times.items()}
        fp32_scores, int8_scores = logits(fp32, x_test), logits(int8, x_test)
        agree = agreement(fp32_scores, int8_scores)
        agree.pop("photos_only")
        results[backend] = {
            "commands": [" ".join(fp32_command), " ".join(int8_command)],
            "fp32_p50_ms": round(p50["fp32"], 3),
            "int8_p50_ms": round(p50["int8"], 3),
            "speedup": round(p50["fp32"] / p50["int8"], 2),
            **agree,
            "fp32_test_accuracy": accuracy(fp32_scores, y_test),
            "int8_test_accuracy": accuracy(int8_scores, y_test),
            "load": [load_before, os.getloadavg()],
        }
        print(backend, json.dumps(results[backend]), flush=True)
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
