#!/usr/bin/env python3
"""Large models: a random-weight BERT-shaped classifier compiled to ONNX Runtime, fp32 and int8.

    python benchmarks/large_models.py --size 110m [--modes fp32,int8] [--out DIR] [--keep]

Sizes (transformers' BertConfig, 30,522-token vocabulary): 110m (bert-base), 335m (bert-large),
730m (hidden 1536, 24 layers: 2.9 GB of fp32 weights, past protobuf's 2 GB limit, so the ONNX
weights travel as external data). Each compile runs as its own `edgekiln compile --no-cache`
process; its wall time and peak RSS (the child's ru_maxrss) are printed, with the artifact's size.
The model folder is built first, in this process, and freed before the compiles.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {  # hidden, layers, heads, ffn
    "110m": (768, 12, 12, 3072),
    "335m": (1024, 24, 16, 4096),
    "730m": (1536, 24, 24, 6144),
}
VOCAB = 30522


def build_folder(folder: Path, size: str) -> int:
    """Save a random-weight BertForSequenceClassification of `size` with a WordPiece tokenizer."""
    import torch
    import transformers

    hidden, layers, heads, ffn = SIZES[size]
    folder.mkdir(parents=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [chr(c) for c in range(ord("a"), ord("z") + 1)]
    vocab = specials + words + [f"##{w}" for w in words]
    vocab += [f"w{i}" for i in range(VOCAB - len(vocab))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    transformers.BertTokenizerFast.from_pretrained(str(folder), do_lower_case=True).save_pretrained(folder)
    config = transformers.BertConfig(
        vocab_size=VOCAB,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        max_position_embeddings=512,
        id2label={0: "negative", 1: "positive"},
        label2id={"negative": 0, "positive": 1},
    )
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config).eval()
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(folder)
    del model
    gc.collect()
    return parameters


def compile_child(folder: Path, out: Path, mode: str) -> dict:
    """One `edgekiln compile` process: seconds, its peak RSS, the artifact's files and bytes."""
    edgekiln = Path(sys.executable).with_name("edgekiln")
    command = [
        str(edgekiln),
        "compile",
        str(folder),
        "--target",
        "host",
        "--backend",
        "onnxruntime",
        "-o",
        str(out),
        "--no-cache",
        "--force",
    ]
    if mode == "int8":
        command += ["--quantize", "dynamic"]
    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as errors:
        child = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors, text=True)
        _, status, usage = os.wait4(child.pid, 0)  # this child's own peak RSS (kilobytes on Linux)
        child.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        errors.seek(0)
        message = errors.read().strip().splitlines()[-1:]
    if child.returncode != 0:
        return {"mode": mode, "seconds": round(seconds, 1), "error": message}
    files = {path.name: path.stat().st_size for path in out.iterdir() if path.is_file()}
    return {
        "mode": mode,
        "seconds": round(seconds, 1),
        "peak_rss_gb": round(usage.ru_maxrss / 1e6, 2),
        "artifact_files": sorted(files),
        "artifact_gb": round(sum(files.values()) / 1e9, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="110m")
    parser.add_argument("--modes", default="fp32,int8", help="comma-separated: fp32, int8 (dynamic)")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the model folder and artifacts")
    args = parser.parse_args()

    work = args.out or Path(tempfile.mkdtemp(prefix="edgekiln-large-"))
    folder = work / f"bert-{args.size}"
    try:
        started = time.perf_counter()
        parameters = build_folder(folder, args.size)
        print(
            f"built {folder.name}: {parameters / 1e6:.0f}M parameters, {parameters * 4 / 1e9:.2f} GB fp32 "
            f"in {time.perf_counter() - started:.0f} s"
        )
        rows = []
        for mode in args.modes.split(","):
            rows.append(compile_child(folder, work / f"artifact-{args.size}-{mode}", mode))
            print(json.dumps(rows[-1]))
        print(json.dumps({"size": args.size, "parameters": parameters, "compiles": rows}, indent=2))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
