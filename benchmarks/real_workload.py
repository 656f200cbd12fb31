#!/usr/bin/env python3
"""The real workload: SST-2 validation sentences, one per call, tokenization included, on PyTorch
eager (+ the Hugging Face tokenizer), on edgekiln artifacts through the torch-free runtime
(`Session.predict([sentence])`) and through `edgekiln serve` (one sentence per POST /predict);
then batch 1 x 128 synthetic tokens on the same runners (serve excepted), in the same run.

    python benchmarks/real_workload.py --model edgekiln-out/sst2-ckpt \\
        ort-fp32=edgekiln-out/sst2-ort ort-int8=edgekiln-out/sst2-ort-int8 auto=edgekiln-out/sst2-auto \\
        --serve auto=edgekiln-out/sst2-auto [--data ../shared/data/sst2/validation.tsv] [--rounds 8]

Every runner lives in its own process and the runners are timed in interleaved rounds
(edgekiln.runtime.interleave), all seeing the same sentences in the same order, so machine load
falls on all of them alike: the ratios to PyTorch eager are the figures to trust on a shared
machine. Prints p50/p90/p99 per sentence, sentences per second (1000 / mean ms) and the ratios,
plus each runner's accuracy on the data (evaluated beforehand, batched, not timed).
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_load import _free_port, _wait_ready  # noqa: E402

from edgekiln.runtime.interleave import measure  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2" / "validation.tsv"
EAGER = "pytorch-eager"


def make_runner(name: str, spec: tuple):
    """Module-level (each runner is built in its own spawned process): spec is (kind, path, threads, mode)."""
    kind, path, threads, mode = spec
    if kind == "pytorch":
        if mode == "tensors":
            from edgekiln.compiler.reference import pytorch_runner

            return pytorch_runner(path, threads)
        return _eager_sentences(path, threads)
    if kind == "serve":
        return _serve_client(path)
    if kind == "hf-tokenizer":  # the tokenization share of PyTorch eager's time
        import transformers

        tokenizer = transformers.AutoTokenizer.from_pretrained(path)
        return lambda sentence: tokenizer(sentence, return_tensors="pt", truncation=True, max_length=128)
    from edgekiln.runtime import load

    session = load(path, threads=threads)
    if mode == "tensors":
        return session.run
    if kind == "tokenizer":  # the tokenization share of the artifact's time
        return lambda sentence: session.encoder.encode([sentence])
    return lambda sentence: session.predict([sentence])


def _eager_sentences(folder: str, threads: int):
    """What a PyTorch user runs: the fast HF tokenizer, the model in inference mode, softmax, argmax."""
    import torch
    import transformers

    torch.set_num_threads(threads)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    labels = model.config.id2label

    def run(sentence: str):
        with torch.inference_mode():
            encoded = tokenizer(sentence, return_tensors="pt", truncation=True, max_length=128)
            probs = model(**encoded).logits.softmax(-1)[0]
        best = int(probs.argmax())
        return labels[best], float(probs[best])

    return run


def _serve_client(url: str):
    """One keep-alive connection; one sentence per POST /v2/models/NAME/predict. The server's process
    is watched too: its runtime's workers spin after each request, as an in-process runner's do."""
    host, port, path, server_pid = url.split("|")
    conn = http.client.HTTPConnection(host, int(port), timeout=60)

    def post(sentence: str) -> http.client.HTTPResponse:
        conn.request("POST", path, body=json.dumps({"texts": [sentence]}), headers={"Content-Type": "application/json"})
        return conn.getresponse()

    def run(sentence: str):
        try:
            response = post(sentence)
        except (http.client.RemoteDisconnected, ConnectionError):  # the server closed an idle keep-alive (5 s)
            conn.close()
            response = post(sentence)
        body = response.read()
        if response.status != 200:
            raise RuntimeError(f"the server answered {response.status}: {body[:200]!r}")
        return json.loads(body)["predictions"][0]

    run.watched_pids = (int(server_pid),)
    return run


def start_server(name: str, artifact: str, threads: int) -> tuple[subprocess.Popen, str]:
    """`edgekiln serve` on a free loopback port, without dynamic batching (one client, one sentence at
    a time: a batching wait would only add latency)."""
    port = _free_port()
    command = [sys.executable, "-m", "edgekiln.cli.main", "serve", f"{name}={artifact}", "--port", str(port)]
    command += ["--max-batch", "1", "--threads", str(threads), "--log-level", "warning"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        _wait_ready(port, server)
    except BaseException:
        stop_server(server)
        raise
    return server, f"127.0.0.1|{port}|/v2/models/{name}/predict|{server.pid}"


def stop_server(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(60)
    except subprocess.TimeoutExpired:
        server.kill()


def named(values: list[str]) -> dict[str, str]:
    """NAME=PATH (or PATH: named by its folder)."""
    pairs = [value.split("=", 1) if "=" in value else (Path(value).name, value) for value in values]
    return {name: str(Path(path).resolve()) for name, path in pairs}


def summary(times: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    rows = {}
    for name, values in times.items():
        runs = np.asarray(values)
        rows[name] = {
            "calls": len(values),
            "p50_ms": float(np.percentile(runs, 50)),
            "p90_ms": float(np.percentile(runs, 90)),
            "p99_ms": float(np.percentile(runs, 99)),
            "per_s": 1000.0 / float(runs.mean()),
        }
    base = rows.get(EAGER)
    for row in rows.values():
        row["x_eager_p50"] = base["p50_ms"] / row["p50_ms"] if base else None
        row["x_eager_per_s"] = row["per_s"] / base["per_s"] if base else None
    return rows


def print_table(title: str, rows: dict[str, dict], accuracy: dict[str, float]) -> None:
    print(f"\n{title}")
    print("| runner | accuracy | p50 ms | p90 ms | p99 ms | per s | x eager (p50) | x eager (per s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in rows.items():
        acc = accuracy.get(name.removeprefix("serve:"))
        ratios = [f"{row[key]:.2f}x" if row[key] else "—" for key in ("x_eager_p50", "x_eager_per_s")]
        print(
            f"| {name} | {f'{acc:.2f} %' if acc is not None else '—'} | {row['p50_ms']:.2f} | {row['p90_ms']:.2f} "
            f"| {row['p99_ms']:.2f} | {row['per_s']:.1f} | {ratios[0]} | {ratios[1]} |"
        )


def accuracies(data: Path, model: str | None, artifacts: dict[str, str]) -> dict[str, float]:
    from edgekiln.compiler.data import load_dataset
    from edgekiln.compiler.evaluate import evaluate

    dataset = load_dataset(str(data))
    targets = ({EAGER: model} if model else {}) | artifacts
    return {name: 100 * evaluate(path, dataset)["accuracy"] for name, path in targets.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifacts", nargs="*", metavar="[NAME=]ART", help="artifact folders to time")
    parser.add_argument("--model", help="the Hugging Face checkpoint folder, for PyTorch eager (the baseline)")
    parser.add_argument("--serve", action="append", default=[], metavar="[NAME=]ART", help="also time through serve")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="TSV with a sentence and a label column")
    parser.add_argument("--limit", type=int, help="only the first N sentences")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds (all sentences spread over them)")
    parser.add_argument("--passes", type=int, default=1, help="times each runner goes through the sentences")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seq", type=int, default=128, help="sequence length of the batch-1 tensor point")
    parser.add_argument("--tensor-calls", type=int, default=10, help="calls per round at batch 1 x --seq (0: skip)")
    parser.add_argument("--tokenizers", action="store_true", help="also time the tokenizers alone (their share)")
    parser.add_argument("--no-accuracy", action="store_true", help="skip evaluating each runner on the data")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"skipped: no SST-2 validation data at {args.data} (put ../shared/data beside the checkout, or --data)")
        return 0
    from edgekiln.compiler.data import load_dataset

    sentences = [example.text for example in load_dataset(str(args.data)).examples][: args.limit]
    artifacts, served = named(args.artifacts), named(args.serve)
    specs = {name: ("artifact", path, args.threads, "sentences") for name, path in artifacts.items()}
    if args.model:
        specs = {EAGER: ("pytorch", str(Path(args.model).resolve()), args.threads, "sentences"), **specs}
    if args.tokenizers and args.model:
        specs["tokenize: HF"] = ("hf-tokenizer", str(Path(args.model).resolve()), args.threads, "sentences")
    if args.tokenizers and artifacts:
        specs["tokenize: edgekiln"] = ("tokenizer", next(iter(artifacts.values())), args.threads, "sentences")
    if not specs and not served:
        parser.error("give --model and/or artifacts to time")
    accuracy = {} if args.no_accuracy else accuracies(args.data, args.model, artifacts | served)
    load_before, started = os.getloadavg(), time.time()
    servers = {}
    try:
        for name, path in served.items():
            servers[name], url = start_server(name, path, args.threads)
            specs[f"serve:{name}"] = ("serve", url, args.threads, "sentences")
        per_round = math.ceil(args.passes * len(sentences) / args.rounds)
        real = summary(measure(make_runner, specs, sentences, rounds=args.rounds, per_round=per_round, cycle=True))
    finally:
        for server in servers.values():
            stop_server(server)
    tensors = {}
    tensor_specs = {name: (kind, path, threads, "tensors") for name, (kind, path, threads, _) in specs.items()}
    tensor_specs = {name: spec for name, spec in tensor_specs.items() if spec[0] in ("pytorch", "artifact")}
    if args.tensor_calls and tensor_specs and artifacts:  # the feeds are shaped by an artifact
        feeds = _tensor_feeds(next(iter(artifacts.values())), args.seq)
        tensors = summary(measure(make_runner, tensor_specs, feeds, rounds=args.rounds, per_round=args.tensor_calls))
    load_after = os.getloadavg()
    header = (
        f"{len(sentences)} sentences from {args.data}, {args.passes} pass(es) in {args.rounds} interleaved rounds, "
        f"{args.threads} threads, {os.cpu_count()} CPUs; load average {load_before[0]:.2f} before, "
        f"{load_after[0]:.2f} after ({time.time() - started:.0f} s)"
    )
    print(header)
    print_table("one sentence per call, tokenization included", real, accuracy)
    if tensors:
        print_table(f"batch 1 x {args.seq} synthetic tokens (model call only)", tensors, accuracy)
    if args.json:
        record = {"setup": header, "accuracy": accuracy, "sentences": real, f"tensors_1x{args.seq}": tensors}
        args.json.write_text(json.dumps(record, indent=2))
    return 0


def _tensor_feeds(artifact: str, sequence: int) -> dict[str, np.ndarray]:
    from edgekiln.runtime import load
    from edgekiln.runtime.bench import feeds_for

    return feeds_for(load(artifact, verify=False), 1, sequence, np.random.default_rng(0))


if __name__ == "__main__":
    sys.exit(main())
