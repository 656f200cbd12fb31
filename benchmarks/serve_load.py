"""Load test for `edgekiln serve`: N concurrent keep-alive clients for S seconds on loopback, with and
without dynamic batching. Prints p50/p99 latency, throughput, errors, wrong answers (each answer
checked against a single direct Session.predict call) and the server's RSS (start and peak).

    .venv/bin/python benchmarks/serve_load.py ART [--clients 200] [--seconds 60]

The server runs as its own process (`python -m edgekiln.cli.main serve ...`); the clients are
threads in this one, so on a small machine they compete with the server for the same cores.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

SENTENCES = [
    "i love this movie",
    "the plot was boring and the acting was terrible",
    "john visited paris last summer",
    "a",
    "mary went to london and it was great fun",
    "not good",
    "google and apple announced new phones",
    "the film is a quiet, patient study of grief that never quite finds its footing in the second half",
    "what a waste of two hours",
    "an instant classic",
    "the soundtrack alone is worth the ticket price, and the "
    "performances from the whole cast are uniformly excellent from the first scene to the last",
]
CONFIGS = {"batching": ["--max-batch", "8", "--max-wait-ms", "2"], "no batching": ["--max-batch", "1"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--threads", type=int, help="inference threads for the server's model")
    parser.add_argument("--only", choices=list(CONFIGS), help="run one configuration")
    args = parser.parse_args()
    expected = _expected(args.artifact)
    print(
        f"{args.artifact}: {args.clients} clients x {args.seconds:.0f} s, POST /predict with one text each "
        f"({len(SENTENCES)} texts, 1-{max(len(s.split()) for s in SENTENCES)} words), {os.cpu_count()} CPUs"
    )
    print("| config | requests | req/s | p50 ms | p99 ms | errors | wrong | RSS start MB | RSS peak MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, flags in CONFIGS.items():
        if args.only and name != args.only:
            continue
        row = _run_config(args, flags + (["--threads", str(args.threads)] if args.threads else []), expected)
        print(
            f"| {name} | {row['requests']} | {row['rps']:.1f} | {row['p50']:.1f} | {row['p99']:.1f} | "
            f"{row['errors']} | {row['wrong']} | {row['rss_start']:.0f} | {row['rss_peak']:.0f} |",
            flush=True,
        )
    return 0


def _expected(artifact: Path) -> dict[str, object]:
    """Each sentence's answer from a direct single call, as the server's JSON would carry it."""
    from edgekiln.runtime import load

    session = load(artifact)
    answers = {}
    for text in SENTENCES:
        answer = session.predict([text])
        answers[text] = answer[0].tolist() if isinstance(answer, np.ndarray) else answer[0]
    return answers


def _correct(got, expected) -> bool:
    if isinstance(expected, list):  # an embedding
        return np.allclose(np.asarray(got, dtype=np.float32), expected, rtol=1e-4, atol=1e-5)
    if hasattr(expected, "label"):  # a classification
        return got["label"] == expected.label and abs(got["score"] - expected.score) < 1e-4
    return [(t["word"], t["tag"]) for t in got] == [(t.word, t.tag) for t in expected]  # tags


def _run_config(args, flags: list[str], expected) -> dict:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "edgekiln.cli.main",
        "serve",
        str(args.artifact),
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--max-queue",
        str(max(256, 2 * args.clients)),
        *flags,
    ]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    try:
        model = _wait_ready(port, server)
        rss = _RssSampler(server.pid)
        rss.start()
        latencies, tallies = _drive(port, model, args.clients, args.seconds, expected)
        rss.stop()
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    ordered = np.sort(np.asarray(latencies)) * 1000 if latencies else np.asarray([float("nan")])
    return {
        "requests": len(latencies),
        "rps": len(latencies) / args.seconds,
        "p50": float(np.percentile(ordered, 50)),
        "p99": float(np.percentile(ordered, 99)),
        **tallies,
        "rss_start": rss.first,
        "rss_peak": rss.peak,
    }


def _drive(port: int, model: str, clients: int, seconds: float, expected) -> tuple[list[float], dict]:
    latencies: list[float] = []
    tallies = {"errors": 0, "wrong": 0}
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)
    path = f"/v2/models/{model}/predict"

    def client(seed: int) -> None:
        rng = random.Random(seed)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        start.wait()
        stop = time.monotonic() + seconds
        while time.monotonic() < stop:
            text = rng.choice(SENTENCES)
            began = time.perf_counter()
            try:
                conn.request(
                    "POST", path, body=json.dumps({"texts": [text]}), headers={"Content-Type": "application/json"}
                )
                response = conn.getresponse()
                body = response.read()
                elapsed = time.perf_counter() - began
                ok = response.status == 200
                right = ok and _correct(json.loads(body)["predictions"][0], expected[text])
            except (OSError, http.client.HTTPException):
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
                ok, right, elapsed = False, False, None
            with lock:
                if ok:
                    latencies.append(elapsed)
                tallies["errors"] += not ok
                tallies["wrong"] += ok and not right
        conn.close()

    threads = [threading.Thread(target=client, args=(seed,), daemon=True) for seed in range(clients)]
    for thread in threads:
        thread.start()
    start.wait()
    for thread in threads:
        thread.join(seconds + 180)
    return latencies, tallies


def _wait_ready(port: int, server: subprocess.Popen) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                conn.close()
                return _model_name(port)
        except OSError:
            time.sleep(0.2)
    raise SystemExit("the server did not become ready in 120 s")


def _model_name(port: int) -> str:
    """The one model's name, from the metrics page's queue-depth line."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    line = next(line for line in text.splitlines() if line.startswith("edgekiln_queue_depth{"))
    return line.split('model="', 1)[1].split('"', 1)[0]


class _RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.first, self.peak, self._done = pid, _rss_mb(pid), _rss_mb(pid), threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.5):
            self.peak = max(self.peak, _rss_mb(self.pid))

    def stop(self) -> None:
        self._done.set()
        self.join(5)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
