"""Commands that need only the runtime: run, bench, inspect, targets."""

from __future__ import annotations

import itertools
import json
import os
import sys
import textwrap
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from edgekiln.runtime import load
from edgekiln.runtime.artifact import read_manifest
from edgekiln.runtime.backends import backend_names, backend_spec
from edgekiln.runtime.bench import BenchConfig, benchmark, check_requested, fixed_batch, format_table
from edgekiln.runtime.errors import EdgekilnError, InputError
from edgekiln.runtime.reports import write_report
from edgekiln.runtime.reports.files import reports_dir, write_text

from .parsing import given_flags, int_list, positive_float, positive_int
from .signing_commands import add_trusted_key_option

WARMUP = 5


def register(commands) -> None:
    run = commands.add_parser("run", help="run an artifact on texts (or image files) and print predictions")
    run.add_argument("artifact", type=Path)
    run.add_argument(
        "texts",
        nargs="+",
        help="texts to predict on, or image files for an image classifier; '-' reads one per line from stdin",
    )
    run.add_argument("--top", type=positive_int, help="image classification: the best N labels (default 5)")
    run.add_argument("--json", action="store_true", help="print JSON instead of a readable listing")
    run.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        help="texts run together; stdin is read and printed one batch at a time (default 32)",
    )
    run.add_argument("--threads", type=positive_int)
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    add_trusted_key_option(run)
    run.set_defaults(handler=cmd_run)

    bench = commands.add_parser("bench", help="measure an artifact's latency, optionally against PyTorch")
    bench.add_argument("artifact", type=Path)
    bench.add_argument(
        "--batch", type=int_list, help="batch sizes, e.g. 1,8 (default 1, or the one a fixed-batch model takes)"
    )
    bench.add_argument(
        "--seq",
        type=int_list,
        help="sequence lengths, e.g. 32,128 (default 128, or the artifact's longest if shorter; not for image models)",
    )
    bench.add_argument("--against", metavar="MODEL", help="also measure this PyTorch model (Hugging Face folder)")
    bench.add_argument("--threads", type=positive_int, help="inference threads (default: the target's)")
    bench.add_argument("--warmup", type=int, default=WARMUP)
    bench.add_argument("--runs", type=positive_int, default=30, help="timed runs per point (minimum with --seconds)")
    bench.add_argument("--seconds", type=positive_float, help="time budget per point")
    bench.add_argument("--json", metavar="OUT", type=Path, help="write the results as JSON to OUT")
    bench.add_argument("--no-save", action="store_true", help="do not add the results to the artifact's report")
    bench.add_argument(
        "--profile",
        action="store_true",
        help="instead of latency: time per operator and per layer "
        "from the backend's own profiler (first --batch/--seq)",
    )
    bench.add_argument("--top", type=positive_int, default=15, help="nodes listed with --profile (default 15)")
    add_trusted_key_option(bench)
    bench.set_defaults(handler=cmd_bench)

    inspect = commands.add_parser("inspect", help="print an artifact's manifest readably, or describe an .onnx file")
    inspect.add_argument("artifact", type=Path, help="an artifact folder, or an .onnx file")
    inspect.add_argument("--json", action="store_true")
    inspect.add_argument("--quantization", action="store_true", help="the ten least accurate quantized layers")
    inspect.set_defaults(handler=cmd_inspect)

    targets = commands.add_parser("targets", help="list the target profiles and the installed backends")
    targets.add_argument("--json", action="store_true")
    targets.set_defaults(handler=cmd_targets)


def cmd_run(args) -> int:
    images = args.texts == ["-"] and read_manifest(args.artifact).image is not None
    texts = _stdin_lines(images) if args.texts == ["-"] else iter(args.texts)
    if images:  # a blank line names no image
        texts = (line for line in texts if line.strip())
    batches = _batches(texts, args.batch_size)
    first = next(batches, None)
    if first is None:
        raise InputError("no texts on stdin", hint="give one text per line, e.g. edgekiln run ART - < texts.txt")
    session = load(args.artifact, threads=args.threads, device=args.device, trusted_keys=args.trusted_key)
    options = {} if args.top is None else {"top": args.top}
    sys.stdout.write("[\n" if args.json else "")
    done, cut = 0, []
    for index, batch in enumerate(itertools.chain([first], batches)):
        predictions = session.predict(batch, **options)
        cut += _say_cut(session, batch, done, already=len(cut))
        done += len(batch)
        items, lines = session.task_spec.describe(batch, predictions) or _describe(batch, predictions)
        if args.json:  # the same text as json.dumps(all items, indent=2), written a batch at a time
            sys.stdout.write(
                (",\n" if index else "")
                + ",\n".join(textwrap.indent(json.dumps(item, indent=2), "  ") for item in items)
            )
        else:
            sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()
    sys.stdout.write("\n]\n" if args.json else "")
    if len(cut) > CUT_NOTES:
        print(
            f"note: {len(cut)} texts in all were longer than the model's input (the first {CUT_NOTES} named above)",
            file=sys.stderr,
        )
    return 0


CUT_NOTES = 10  # texts named one by one; past them, one count at the end


def _say_cut(session, texts: list, done: int, already: int) -> list[int]:
    """A note on stderr for each text longer than the model's longest input (only its start was read),
    up to CUT_NOTES in all; returns the numbers of those texts in this batch."""
    encoder = session.encoder
    if session.manifest.tokenizer is None or not hasattr(encoder, "cut"):
        return []
    numbers = [number for number, cut in enumerate(encoder.cut(texts), start=done + 1) if cut]
    for number in numbers[: max(0, CUT_NOTES - already)]:
        print(
            f"note: text {number} is longer than the model's {encoder.max_length} tokens: only its start was read",
            file=sys.stderr,
        )
    return numbers


def _stdin_lines(paths: bool = False) -> Iterator[str]:
    """stdin one line at a time (never read whole), each checked to be UTF-8 (`paths`: image paths)."""
    if sys.stdin is None:  # started with stdin closed
        raise InputError("'-' reads texts from stdin, which is closed", hint="pipe one text per line into it")
    stream = getattr(sys.stdin, "buffer", None)
    if stream is None:  # a text stream with no bytes underneath
        yield from (line.rstrip("\n") for line in sys.stdin)
        return
    for number, raw in enumerate(stream, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"stdin line {number} is not valid UTF-8 (byte {raw[exc.start]:#04x} at offset {exc.start})",
                hint="for an image model stdin takes image paths, one per line (pass the files as arguments, "
                "or e.g. ls *.jpg | edgekiln run ART -)"
                if paths
                else "convert the text to UTF-8, e.g. with iconv -t utf-8",
            ) from None
        yield line.rstrip("\n").removesuffix("\r")


def _batches(texts: Iterator[str], size: int) -> Iterator[list[str]]:
    while batch := list(itertools.islice(texts, size)):
        yield batch


def _describe(texts: list[str], predictions) -> tuple[list[dict], list[str]]:
    """(JSON items, readable lines) for one batch of texts and their predictions."""
    if isinstance(predictions, np.ndarray):
        items = [{"text": t, "embedding": row.tolist()} for t, row in zip(texts, predictions)]
        lines = [
            f"[{len(row)}] norm {np.linalg.norm(row):.4f}  {' '.join(f'{v:+.4f}' for v in row[:4])} …  {t}"
            for t, row in zip(texts, predictions)
        ]
    elif predictions and isinstance(predictions[0], list):
        items = [{"text": t, "tokens": [tag.to_dict() for tag in tags]} for t, tags in zip(texts, predictions)]
        lines = [" ".join(f"{tag.word}/{tag.tag}" for tag in tags) for tags in predictions]
    else:
        items = [{"text": t, **p.to_dict()} for t, p in zip(texts, predictions)]
        lines = [f"{p.label}\t{p.score:.4f}\t{t}" for t, p in zip(texts, predictions)]
    return items, lines


def cmd_bench(args) -> int:
    manifest = read_manifest(args.artifact)
    if args.seq is not None and manifest.image is not None:
        raise InputError(
            f"{args.artifact} is an image model: its input has one size, so --seq does not apply", hint="drop --seq"
        )
    if (
        args.seq is not None
        and manifest.tokenizer is None
        and not any(isinstance(size, str) for spec in manifest.inputs for size in spec.shape[1:])
    ):
        raise InputError(
            f"{args.artifact}'s inputs have no sequence axis (no dynamic size past the batch), so --seq does not apply",
            hint="drop --seq",
        )
    args.batch = args.batch or (fixed_batch(manifest.inputs) or 1,)
    if args.json:
        check_writable(args.json)
    if args.profile:
        _refuse_with_profile(args)
        return _profile(args)
    if args.against and not Path(args.against).exists():
        raise InputError(
            f"--against {args.against} does not exist",
            hint="give the Hugging Face folder the artifact was compiled from",
        )
    check_requested(read_manifest(args.artifact).inputs, args.batch, args.seq)
    config = BenchConfig(
        batches=args.batch,
        sequences=args.seq,
        warmup=args.warmup,
        runs=args.runs,
        seconds=args.seconds,
    )
    report = run_bench(args.artifact, config, threads=args.threads, against=args.against, trusted_keys=args.trusted_key)
    print(format_table(report))
    if args.json:
        write_json(args.json, report)
    if not args.no_save:
        save_bench_report(args.artifact, report)
    return 0


def _refuse_with_profile(args) -> None:
    """--profile times operators in one pass of its own: latency options would be ignored."""
    given = given_flags(
        ("--against", args.against, None),
        ("--seconds", args.seconds, None),
        ("--warmup", args.warmup, WARMUP),
    )
    if given:
        raise InputError(
            f"--profile times each operator over --runs calls; {' and '.join(given)} "
            f"{'applies' if len(given) == 1 else 'apply'} to latency runs only",
            hint=f"drop {' and '.join(given)}, or run bench without --profile for them",
        )


def check_writable(path: Path) -> None:
    """An output file that cannot be written is refused before any measuring, not after it."""
    parent = path.parent if str(path.parent) else Path(".")
    if path.is_dir() or not parent.is_dir() or not os.access(parent, os.W_OK):
        raise InputError(f"cannot write {path}", hint="choose a --json path in a folder you can write")


def _profile(args) -> int:
    from edgekiln.runtime.bench import check_requested, default_sequences, feeds_for, has_sequence_axis
    from edgekiln.runtime.profile import format_profile, profile_ops, summarize

    session = load(args.artifact, threads=args.threads, trusted_keys=args.trusted_key)
    check_requested(session.manifest.inputs, args.batch[:1], args.seq[:1] if args.seq else None)
    batch = args.batch[0]
    sequence = (args.seq or default_sequences(session))[0] if has_sequence_axis(session) else None
    feeds = feeds_for(session, batch, sequence or 1, np.random.default_rng(0))
    ops = profile_ops(args.artifact, session.manifest, feeds, runs=args.runs, threads=session.threads)
    report = {
        "backend": session.manifest.backend,
        "batch": batch,
        "sequence": sequence,
        "runs": args.runs,
        "threads": session.threads,
        **summarize(ops, args.top),
    }
    shape = f"batch {batch}" + (f" x sequence {sequence}" if sequence is not None else "")
    print(f"{session.manifest.backend}, {shape}, {args.runs} runs, {session.threads} threads")
    print(format_profile(report, args.top))
    if args.json:
        write_json(args.json, report)
    if not args.no_save:
        save_report(args.artifact, "profile.json", report)
    return 0


def write_json(path: Path, report: dict) -> None:
    """`--json OUT`: a path that cannot be written is the user's to fix, not a crash."""
    try:
        path.write_text(json.dumps(report, indent=2))
    except OSError as exc:
        raise InputError(f"cannot write {path} ({exc.strerror})", hint="choose a writable --json path") from None
    print(f"wrote {path}")


def run_bench(
    artifact: Path,
    config: BenchConfig,
    *,
    threads: int | None,
    against: str | None,
    trusted_keys: list[Path] | None = None,
) -> dict:
    started = time.perf_counter()
    session = load(artifact, threads=threads, trusted_keys=trusted_keys)
    load_seconds = time.perf_counter() - started
    factory = None
    if against:

        def pytorch():  # torch is imported only now, after the artifact's memory is measured
            from edgekiln.compiler.recipe import Recipe
            from edgekiln.compiler.reference import pytorch_runner

            stored = artifact / "recipe.toml"
            recipe = Recipe.from_file(stored) if stored.is_file() else None
            return pytorch_runner(against, session.threads, session.manifest, recipe)

        factory = ("pytorch", pytorch)
    return benchmark(session, config, load_seconds=load_seconds, against=factory)


def save_bench_report(artifact: Path, report: dict) -> None:
    save_report(artifact, "benchmark.json", report)


def save_report(artifact: Path, name: str, report: dict) -> None:
    """Add a report to reports/ (not hashed: reports describe, they are not run) and re-render the page."""
    try:
        write_text(reports_dir(artifact), name, json.dumps(report, indent=2))
        path = write_report(artifact, read_manifest(artifact))
    except OSError as exc:
        print(f"note: could not update the artifact's report ({exc})", file=sys.stderr)
        return
    print(f"report: {path}")


LABELS_SHOWN = 10  # inspect's labels row: an ImageNet model has 1,000


def cmd_inspect(args) -> int:
    if args.artifact.suffix.lower() == ".onnx" and args.artifact.is_file():
        from edgekiln.compiler.onnx_inspect import print_description  # needs the compiler's onnx package

        if args.quantization:
            raise InputError(
                "--quantization shows an artifact's int8 layers; an .onnx file has none yet",
                hint="compile it with --quantize, then inspect the artifact (or drop --quantization)",
            )

        return print_description(args.artifact, as_json=args.json)
    if args.artifact.suffix.lower() == ".onnx" and not args.artifact.exists():
        raise InputError(f"ONNX file {args.artifact} does not exist", hint="check the path")
    manifest = read_manifest(args.artifact)
    if args.quantization:
        return _print_worst_layers(args.artifact, as_json=args.json)
    if args.json:
        print(json.dumps(manifest.to_json_dict(), indent=2))
        return 0
    rows = [
        (
            "artifact",
            f"{manifest.artifact_id} (schema {manifest.schema_version}, edgekiln "
            f"{manifest.edgekiln_version}, {manifest.created_at})",
        ),
        ("source", manifest.source),
        ("task", manifest.task.value),
        ("backend", manifest.backend),
        (
            "target",
            f"{manifest.target.name} ({manifest.target.arch}, {manifest.target.threads} threads, "
            f"accelerator {manifest.target.accelerator.value})",
        ),
        ("precision", manifest.precision.value),
    ]
    rows += [(f"input {t.name}", f"{t.dtype} {list(t.shape)}") for t in manifest.inputs]
    rows += [(f"output {t.name}", f"{t.dtype} {list(t.shape)}") for t in manifest.outputs]
    if manifest.labels:
        shown = ", ".join(manifest.labels[:LABELS_SHOWN])
        more = len(manifest.labels) - LABELS_SHOWN
        rows.append(
            (
                "labels",
                f"{len(manifest.labels)}: {shown}" + (f", … ({more} more; --json lists all)" if more > 0 else ""),
            )
        )
    if manifest.image:
        rows.append(("image", " ".join(f"{k}={v}" for k, v in manifest.image.model_dump(mode="json").items())))
    if manifest.tokenizer:
        rows.append(("tokenizer", f"{manifest.tokenizer.file}, max length {manifest.tokenizer.max_length}"))
    rows += [
        (f"pass {i + 1}", f"{p.name} {json.dumps(p.config)} {p.seconds:.2f} s{' cached' if p.cached else ''}")
        for i, p in enumerate(manifest.passes)
    ]
    rows += [(f"file {name}", digest[:16] + "…") for name, digest in manifest.files.items()]
    rows += [(f"tool {name}", version) for name, version in manifest.tool_versions.items()]
    width = max(len(key) for key, _ in rows)
    print("\n".join(f"{key.ljust(width)}  {value}" for key, value in rows))
    return 0


def _print_worst_layers(artifact: Path, *, as_json: bool = False) -> int:
    from edgekiln.runtime.reports.schema import read_reports

    report = read_reports(artifact).quantization
    if report is None:
        raise InputError(
            f"{artifact} was not quantized (it has no quantization report)",
            hint="compile with --quantize to get per-layer diagnostics",
        )
    if as_json:  # the whole typed report: the summary's figures and every layer's row
        print(json.dumps(report.model_dump(mode="json"), indent=2))
        return 0
    print(report.summary())
    if not report.layers:
        print("no per-layer table for this quantizer")
        return 0
    rows = sorted((r for r in report.layers if r.sqnr_db is not None), key=lambda r: r.sqnr_db)[:10]
    print(f"{'SQNR dB':>8}  {'int8':>5}  {'kept float':>10}  {'op':8}  layer")
    for row in rows:
        print(f"{row.sqnr_db:8.2f}  {str(row.int8):>5}  {str(row.kept_float):>10}  {row.op:8}  {row.node}")
    return 0


def cmd_targets(args) -> int:
    from edgekiln.targets import load_profile, profile_names

    profiles = []
    for name in profile_names():
        try:
            profiles.append(load_profile(name))
        except EdgekilnError as exc:  # a plugin's bad profile: named, the others still listed
            warnings.warn(f"{exc.message}; not listed ({exc.hint})", stacklevel=1)
    if args.json:
        print(
            json.dumps(
                {
                    "targets": [p.model_dump(mode="json") for p in profiles],
                    "backends": [_spec_json(backend_spec(name)) for name in backend_names()],
                },
                indent=2,
            )
        )
        return 0
    for p in profiles:
        print(
            f"{p.name:20s} {p.arch.value:8s} {p.cores:2d} cores  {','.join(x.value for x in p.precisions):16s} "
            f"backends {','.join(p.preferred_backends):26s} {p.description}"
        )
    print(f"{'host':20s} detected at compile time from this machine")
    print("\nbackends installed here:")
    for name in backend_names():
        spec = backend_spec(name)
        modes = ", ".join(spec.quantize_modes()) or "none"
        print(f"  {name:12s} precisions {','.join(spec.precisions):10s} int8 modes {modes:22s} {spec.description}")
    return 0


def _spec_json(spec) -> dict:
    return {
        "name": spec.name,
        "description": spec.description,
        "precisions": list(spec.precisions),
        "quantize_modes": list(spec.quantize_modes()),
        "target_fields": list(spec.target_fields),
        "emulation": spec.emulation_wheels is not None,
    }
