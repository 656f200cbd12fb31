"""Commands that need only the runtime: run, bench, inspect, targets."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from edgekiln.runtime import load
from edgekiln.runtime.artifact import read_manifest
from edgekiln.runtime.bench import BenchConfig, benchmark, format_table
from edgekiln.runtime.errors import InputError
from edgekiln.runtime.manifest import REPORTS_DIR
from edgekiln.runtime.reports import write_report

from .parsing import int_list, positive_float, positive_int
from .signing_commands import add_trusted_key_option


def register(commands) -> None:
    run = commands.add_parser("run", help="run an artifact on texts and print predictions")
    run.add_argument("artifact", type=Path)
    run.add_argument("texts", nargs="+", help="texts to predict on; '-' reads one text per line from stdin")
    run.add_argument("--json", action="store_true", help="print JSON instead of a readable listing")
    run.add_argument("--threads", type=positive_int)
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    add_trusted_key_option(run)
    run.set_defaults(handler=cmd_run)

    bench = commands.add_parser("bench", help="measure an artifact's latency, optionally against PyTorch")
    bench.add_argument("artifact", type=Path)
    bench.add_argument("--batch", type=int_list, default=(1,), help="batch sizes, e.g. 1,8 (default 1)")
    bench.add_argument("--seq", type=int_list, default=(128,), help="sequence lengths, e.g. 32,128 (default 128)")
    bench.add_argument("--against", metavar="MODEL", help="also measure this PyTorch model (Hugging Face folder)")
    bench.add_argument("--threads", type=positive_int, help="inference threads (default: the target's)")
    bench.add_argument("--warmup", type=int, default=5)
    bench.add_argument("--runs", type=positive_int, default=30, help="timed runs per point (minimum with --seconds)")
    bench.add_argument("--seconds", type=positive_float, help="time budget per point")
    bench.add_argument("--json", metavar="OUT", type=Path, help="write the results as JSON to OUT")
    bench.add_argument("--no-save", action="store_true", help="do not add the results to the artifact's report")
    add_trusted_key_option(bench)
    bench.set_defaults(handler=cmd_bench)

    inspect = commands.add_parser("inspect", help="print an artifact's manifest readably")
    inspect.add_argument("artifact", type=Path)
    inspect.add_argument("--json", action="store_true")
    inspect.add_argument("--quantization", action="store_true", help="the ten least accurate quantized layers")
    inspect.set_defaults(handler=cmd_inspect)

    targets = commands.add_parser("targets", help="list the target profiles")
    targets.add_argument("--json", action="store_true")
    targets.set_defaults(handler=cmd_targets)


def cmd_run(args) -> int:
    texts = [line.rstrip("\n") for line in sys.stdin] if args.texts == ["-"] else args.texts
    if not texts:
        raise InputError("no texts on stdin")
    session = load(args.artifact, threads=args.threads, device=args.device, trusted_keys=args.trusted_key)
    predictions = session.predict(texts)
    if isinstance(predictions, np.ndarray):
        items = [{"text": t, "embedding": row.tolist()} for t, row in zip(texts, predictions)]
        lines = [f"[{len(row)}] norm {np.linalg.norm(row):.4f}  {' '.join(f'{v:+.4f}' for v in row[:4])} …  {t}"
                 for t, row in zip(texts, predictions)]
    elif predictions and isinstance(predictions[0], list):
        items = [{"text": t, "tokens": [tag.to_dict() for tag in tags]} for t, tags in zip(texts, predictions)]
        lines = [" ".join(f"{tag.word}/{tag.tag}" for tag in tags) for tags in predictions]
    else:
        items = [{"text": t, **p.to_dict()} for t, p in zip(texts, predictions)]
        lines = [f"{p.label}\t{p.score:.4f}\t{t}" for t, p in zip(texts, predictions)]
    print(json.dumps(items, indent=2) if args.json else "\n".join(lines))
    return 0


def cmd_bench(args) -> int:
    config = BenchConfig(batches=args.batch, sequences=args.seq, warmup=args.warmup, runs=args.runs,
                         seconds=args.seconds)
    report = run_bench(args.artifact, config, threads=args.threads, against=args.against,
                       trusted_keys=args.trusted_key)
    print(format_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
        print(f"wrote {args.json}")
    if not args.no_save:
        save_bench_report(args.artifact, report)
    return 0


def run_bench(artifact: Path, config: BenchConfig, *, threads: int | None, against: str | None,
              trusted_keys: list[Path] | None = None) -> dict:
    started = time.perf_counter()
    session = load(artifact, threads=threads, trusted_keys=trusted_keys)
    load_seconds = time.perf_counter() - started
    factory = None
    if against:
        from edgekiln.compiler.reference import pytorch_runner  # only here does bench need torch
        factory = ("pytorch", lambda: pytorch_runner(against, session.threads))
    return benchmark(session, config, load_seconds=load_seconds, against=factory)


def save_bench_report(artifact: Path, report: dict) -> None:
    """Add the results to reports/ (not hashed: reports describe, they are not run)."""
    try:
        (artifact / REPORTS_DIR).mkdir(exist_ok=True)
        (artifact / REPORTS_DIR / "benchmark.json").write_text(json.dumps(report, indent=2))
        path = write_report(artifact, read_manifest(artifact))
    except OSError as exc:
        print(f"note: could not update the artifact's report ({exc})", file=sys.stderr)
        return
    print(f"report: {path}")


def cmd_inspect(args) -> int:
    manifest = read_manifest(args.artifact)
    if args.quantization:
        return _print_worst_layers(args.artifact)
    if args.json:
        print(json.dumps(manifest.to_json_dict(), indent=2))
        return 0
    rows = [("artifact", f"{manifest.artifact_id} (schema {manifest.schema_version}, edgekiln "
                         f"{manifest.edgekiln_version}, {manifest.created_at})"),
            ("source", manifest.source), ("task", manifest.task.value), ("backend", manifest.backend.value),
            ("target", f"{manifest.target.name} ({manifest.target.arch}, {manifest.target.threads} threads, "
                       f"accelerator {manifest.target.accelerator.value})"),
            ("precision", manifest.precision.value)]
    rows += [(f"input {t.name}", f"{t.dtype} {list(t.shape)}") for t in manifest.inputs]
    rows += [(f"output {t.name}", f"{t.dtype} {list(t.shape)}") for t in manifest.outputs]
    if manifest.labels:
        rows.append(("labels", ", ".join(manifest.labels)))
    if manifest.tokenizer:
        rows.append(("tokenizer", f"{manifest.tokenizer.file}, max length {manifest.tokenizer.max_length}"))
    rows += [(f"pass {i + 1}", f"{p.name} {json.dumps(p.config)} {p.seconds:.2f} s{' cached' if p.cached else ''}")
             for i, p in enumerate(manifest.passes)]
    rows += [(f"file {name}", digest[:16] + "…") for name, digest in manifest.files.items()]
    rows += [(f"tool {name}", version) for name, version in manifest.tool_versions.items()]
    width = max(len(key) for key, _ in rows)
    print("\n".join(f"{key.ljust(width)}  {value}" for key, value in rows))
    return 0


def _print_worst_layers(artifact: Path) -> int:
    found = [p for p in (artifact / REPORTS_DIR / name for name in ("quantize.json", "quantize_openvino.json"))
             if p.is_file()]
    if not found:
        raise InputError(f"{artifact} was not quantized (no {REPORTS_DIR}/quantize.json)",
                         hint="compile with --quantize to get per-layer diagnostics")
    report = json.loads(found[0].read_text())
    if not report["layers"]:
        print(f"kept {report['chosen']}; accuracy drop {report['accuracy_drop']} points; speed-up "
              f"{report['speedup']}x; no per-layer table for this backend")
        return 0
    rows = sorted((r for r in report["layers"] if r["sqnr_db"] is not None), key=lambda r: r["sqnr_db"])[:10]
    print(f"kept {report['chosen']}; accuracy drop {report['accuracy_drop']} points; speed-up {report['speedup']}x")
    print(f"{'SQNR dB':>8}  {'int8':>5}  {'kept float':>10}  {'op':8}  layer")
    for row in rows:
        print(f"{row['sqnr_db']:8.2f}  {str(row.get('int8')):>5}  {str(row['kept_float']):>10}  {row['op']:8}  "
              f"{row['node']}")
    return 0


def cmd_targets(args) -> int:
    from edgekiln.targets import load_profile, profile_names

    profiles = [load_profile(name) for name in profile_names()]
    if args.json:
        print(json.dumps([p.model_dump(mode="json") for p in profiles], indent=2))
        return 0
    for p in profiles:
        print(f"{p.name:20s} {p.arch.value:8s} {p.cores:2d} cores  {','.join(x.value for x in p.precisions):16s} "
              f"backends {','.join(b.value for b in p.preferred_backends):26s} {p.description}")
    print(f"{'host':20s} detected at compile time from this machine")
    return 0
