#!/usr/bin/env python3
"""Fine-tune the real all-MiniLM-L6-v2 on SST-2 or WNUT-17 from ../shared/data, compile the result,
and evaluate the artifact against the checkpoint; prints the figures benchmarks/README.md records.

    python benchmarks/finetune_real.py sst2 --method full --epochs 2
    python benchmarks/finetune_real.py sst2 --method lora --epochs 2
    python benchmarks/finetune_real.py wnut17 --method full --epochs 5
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from edgekiln.compiler import compile
from edgekiln.compiler.data import DataTask, load_dataset
from edgekiln.compiler.evaluate import evaluate
from edgekiln.compiler.finetune import FinetuneConfig, LoraSettings, finetune
from edgekiln.compiler.quickstart import model_folder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SETS = {  # train, dev (model selection), test (reported; None = dev is the reported split)
    "sst2": (DataTask.TEXT_CLASSIFICATION, "sst2:train", "sst2:validation", None),
    "wnut17": (DataTask.TOKEN_CLASSIFICATION, "wnut17:train", "wnut17:dev", "wnut17:test"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(SETS))
    parser.add_argument("--method", choices=["full", "lora"], default="full")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--max-train", type=int)
    parser.add_argument("--out", type=Path, default=Path("edgekiln-out/bench"))
    args = parser.parse_args()
    task, train, dev, test = SETS[args.dataset]
    config = FinetuneConfig(
        task=task,
        epochs=args.epochs,
        learning_rate=args.lr,
        max_train_examples=args.max_train,
        lora=LoraSettings() if args.method == "lora" else None,
    )
    name = f"{args.dataset}-{args.method}"
    started = time.perf_counter()
    result = finetune(
        model_folder(),
        args.out / name,
        train_data=str(DATA / train),
        eval_data=str(DATA / dev),
        config=config,
        force=True,
    )
    train_wall = time.perf_counter() - started
    artifact = compile(result.path, "host", args.out / f"{name}-artifact", force=True).path
    reported = load_dataset(str(DATA / (test or dev)))
    scores = evaluate(artifact, reported, against=result.path)
    metric = result.report["metric"]
    summary = {
        "dataset": args.dataset,
        "method": args.method,
        "epochs": args.epochs,
        "learning_rate": config.effective_learning_rate,
        "train_examples": result.report["train_data"]["examples"],
        "finetune_wall_seconds": round(train_wall, 1),
        "best_epoch": result.report["best_epoch"],
        f"dev_{metric}": result.report["best_metric"],
        "reported_split": test or dev,
        f"artifact_{metric}": scores[metric],
        f"checkpoint_{metric}": scores["against"][metric],
        "artifact_vs_checkpoint_agreement": scores["agreement"],
    }
    (args.out / f"{name}.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
