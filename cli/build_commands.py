"""Commands that need the compiler (torch, transformers, onnx): compile."""

from __future__ import annotations

import sys
from pathlib import Path

from edgekiln.runtime.manifest import Task

from .parsing import fraction_list, given_flags, int_list, key_value, name_list, positive_int


def register(commands) -> None:
    build = commands.add_parser(
        "compile",
        help="compile a model for a target into an artifact folder",
        description="Settings come from --recipe FILE (TOML/JSON/YAML), then the flags; "
        "every artifact stores its recipe as recipe.toml.",
    )
    build.add_argument("model", help="Hugging Face model folder, an .onnx file, or timm:NAME (with --weights)")
    build.add_argument("--target", default="host", help="profile name (see `edgekiln targets`), host, or a .toml file")
    build.add_argument(
        "-o", "--output", type=Path, help="artifact folder to write (needed unless only --save-recipe is wanted)"
    )
    build.add_argument("--force", action="store_true", help="replace an existing artifact folder")
    build.add_argument(
        "--sign",
        type=Path,
        metavar="KEY",
        help="sign the artifact with this Ed25519 private key "
        "(`edgekiln keygen` makes one); devices check it with "
        "--trusted-key",
    )
    build.add_argument(
        "--recipe", type=Path, help="build recipe to start from (e.g. ARTIFACT/recipe.toml); flags override it"
    )
    build.add_argument("--save-recipe", type=Path, help="write the resulting recipe to this .toml/.json/.yaml file")
    build.add_argument(
        "--backend",
        help="a backend name from `edgekiln targets` (default: the target's first "
        "preference that can do the job), or auto: build the candidates, "
        "measure them here, keep the best (needs --eval-data)",
    )
    build.add_argument(
        "--backend-option",
        dest="backend_options",
        action="append",
        type=key_value,
        help="KEY=VALUE for the backend's own options (repeatable; VALUE is read as JSON if it can be)",
    )
    build.add_argument(
        "--task",
        help="override the detected task: " + ", ".join(task.value for task in Task),
    )
    build.add_argument(
        "--input-shape",
        dest="input_shapes",
        action="append",
        metavar="NAME:SHAPE",
        help="raw-tensor models: an input's shape, e.g. images:1x3x640x640, with ranges for dynamic "
        "axes: images:1x3x[320..1280:32]x[320..1280:32] (repeatable, one per input)",
    )
    build.add_argument("--pooling", help="pooling for a bare encoder: mean, cls, max, mean-sqrt-len")
    build.add_argument("--weights", help="timm:NAME models: the weights file (.safetensors, or a .pth state dict)")
    build.add_argument(
        "--labels", type=Path, help="timm:NAME models: class names, one a line (or a JSON list), in output order"
    )
    build.add_argument("--exporter", help="auto (dynamo, then torchscript; default), dynamo, torchscript")
    build.add_argument(
        "--opset",
        type=positive_int,
        help="ONNX opset of the export (default 18; torch and Hugging "
        "Face models only: an ONNX file keeps its own, upgraded "
        "if below 10)",
    )
    build.add_argument("--no-cache", dest="cache", action="store_const", const=False, help="recompute every pass")
    build.add_argument(
        "--precision",
        choices=["fp32", "bf16"],
        help="float precision: bf16 runs OpenVINO in bf16 on CPUs with AVX-512 BF16 or AMX",
    )
    tvm = build.add_argument_group("tvm and openvino (backend options)")
    tvm.add_argument(
        "--sequence-buckets",
        type=int_list,
        help="TVM: sequence lengths to compile (default: the profile's, e.g. 32,64,128); OpenVINO: text "
        "requests padded to these lengths run as static shapes (faster when lengths change from call to "
        "call; default: dynamic shapes); auto: the lengths its OpenVINO static-shape candidates use",
    )
    tvm.add_argument(
        "--tune-trials",
        type=int,
        help="MetaSchedule trials to tune kernels on this machine (default 0: untuned); the database is cached",
    )
    tvm.add_argument(
        "--tune-minutes",
        type=float,
        help="tune for about this many minutes instead of a trial count (rounds of trials across all buckets)",
    )
    tvm.add_argument(
        "--tune-remote",
        metavar="ADDRESS",
        help="measure tuning candidates on a board over TVM's RPC: HOST:PORT (its rpc_server) or "
        "tracker://HOST:PORT/KEY (a tracker); candidates are linked here, cross-compiled for the profile",
    )
    prune = build.add_argument_group("structured pruning (fine-tuned BERT-family classifiers, image classifiers)")
    prune.add_argument("--prune-heads", type=float, help="fraction of attention heads to remove, e.g. 0.3")
    prune.add_argument("--prune-ffn", type=float, help="fraction of FFN neurons to remove, e.g. 0.4")
    prune.add_argument(
        "--prune-flops",
        type=float,
        help="fraction of FLOPs to remove: encoder FLOPs (heads and FFN) of transformers, conv MACs of CNNs",
    )
    prune.add_argument(
        "--prune-importance",
        choices=["taylor", "taylor-label-free", "magnitude"],
        help="head/neuron scores: taylor (default; needs --data), taylor-label-free, magnitude",
    )
    prune.add_argument(
        "--recover",
        action="store_const",
        const={},
        help="fine-tune the pruned model on --data, distilling from the unpruned one",
    )
    prune.add_argument("--recover-epochs", type=positive_int)
    prune.add_argument(
        "--recover-examples", type=positive_int, help="training examples sampled for recovery (default 60000)"
    )
    prune.add_argument(
        "--recover-lora", action="store_const", const=True, help="recover with LoRA instead of all weights"
    )
    prune.add_argument(
        "--data", help="training data for importance scores and recovery: PATH[:SPLIT], or an image folder"
    )
    build.add_argument(
        "--data-format",
        choices=["tsv", "csv", "jsonl", "conll", "hf-disk", "image-folder"],
        help="force the reader of every data file given (default: by extension, then by content)",
    )
    build.add_argument(
        "--text-column", help="text column of every TSV/CSV/JSONL data file given (default: sentence, text, …)"
    )
    build.add_argument("--label-column", help="label column of those files (default: label, labels, class, …)")
    quant = build.add_argument_group("quantization")
    quant.add_argument(
        "--quantize",
        help="none (default), dynamic, static, or auto (the fastest int8 "
        "within the budget; float if int8 is not faster)",
    )
    quant.add_argument(
        "--calibration",
        help="calibration data: a dataset (PATH[:SPLIT]), a .txt of text lines, or for "
        "raw-tensor models an .npz of named input arrays (or a folder of them)",
    )
    quant.add_argument("--calibration-samples", type=positive_int, help="default 128")
    quant.add_argument("--calibration-method", help="minmax (default), percentile, entropy")
    quant.add_argument("--accuracy-budget", type=float, help="allowed drop in points on --eval-data")
    quant.add_argument(
        "--eval-data",
        help="labelled data for the accuracy budget: PATH[:SPLIT]; raw-tensor models: an "
        ".npz of inputs, judged by agreement with the float outputs",
    )
    auto = build.add_argument_group("--backend auto (measured selection)")
    auto.add_argument(
        "--latency-budget",
        type=float,
        help="keep the most accurate candidate under this p50 (ms) instead of the fastest within --accuracy-budget",
    )
    auto.add_argument(
        "--auto-backends",
        type=name_list,
        help="backends to try (default: the target's preferred ones that need no on-device tuning)",
    )
    auto.add_argument(
        "--auto-timing",
        choices=("data", "shape"),
        default="data",
        help="time candidates on the eval examples, one per predict call, tokenization or decoding included "
        "(data, the default), or the model alone at one batch x sequence (shape)",
    )
    auto.add_argument(
        "--auto-sequence",
        type=positive_int,
        default=128,
        help="--auto-timing shape: sequence length timed (default 128)",
    )
    auto.add_argument(
        "--auto-prune-flops",
        type=fraction_list,
        metavar="LEVELS",
        help="pruning levels to try, e.g. 0.4,0.6 (needs --data; default: --prune-flops's one level)",
    )
    auto.add_argument(
        "--auto-keep-candidates",
        action="store_true",
        help="keep every candidate artifact in OUTPUT.candidates/ (to benchmark the runners-up)",
    )
    build.set_defaults(handler=cmd_compile)


def show_progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr)


def cmd_compile(args) -> int:
    from edgekiln.compiler import compile
    from edgekiln.compiler.errors import CompileError

    if args.sign is not None:
        from edgekiln.runtime.signing import check_private_key

        check_private_key(args.sign)  # a bad key fails before the build, not after it
    if args.backend == "auto":
        return _compile_auto(args)
    _refuse_auto_flags(args)
    recipe = recipe_from_args(args)
    if args.data and recipe.prune is None:  # the flag, not a file's
        raise CompileError(
            "--data is training data for pruning (importance scores and recovery); nothing here uses it",
            hint="add --prune-flops or --prune-heads, or drop --data",
        )
    if args.eval_data and recipe.prune is None and recipe.quantize.mode.value == "none":
        raise CompileError(
            "--eval-data scores quantization against --accuracy-budget (and pruning); nothing here uses it",
            hint="add --quantize with --accuracy-budget, or drop --eval-data",
        )
    given = given_flags(("--text-column", args.text_column, None), ("--label-column", args.label_column, None))
    if given and not any(recipe.data_refs().values()):
        raise CompileError(
            f"{' and '.join(given)} name columns of the data files, and this compile reads none",
            hint=f"drop {' and '.join(given)}, or give --calibration, --eval-data or --data",
        )
    if args.calibration and recipe.quantize.mode.value == "none" and recipe.prune is None:  # the flag, not a file's
        raise CompileError(
            "--calibration is data for --quantize (and for pruning's label-free scores); nothing here uses it",
            hint="add --quantize static (or auto), or drop --calibration",
        )
    if args.save_recipe is not None:
        from edgekiln.compiler.api import absolute_data

        saved = absolute_data(recipe).save(args.save_recipe)  # data paths absolute: it works from any folder
        print(f"recipe written to {saved}", file=sys.stderr)
        if args.output is None:
            return 0
    if args.output is None:
        raise CompileError("compile needs an output folder", hint="pass -o DIR (or only --save-recipe FILE)")
    result = compile(args.model, args.target, args.output, recipe, force=args.force, progress=show_progress)
    print_result(result)
    _sign(args, result.path)
    return 0


def _refuse_auto_flags(args) -> None:
    """The measured selection's flags apply to --backend auto only: elsewhere they would be ignored."""
    given = given_flags(
        ("--latency-budget", args.latency_budget, None),
        ("--auto-backends", args.auto_backends, None),
        ("--auto-timing", args.auto_timing, "data"),
        ("--auto-sequence", args.auto_sequence, 128),
        ("--auto-prune-flops", args.auto_prune_flops, None),
        ("--auto-keep-candidates", args.auto_keep_candidates, False),
    )
    if given:
        from edgekiln.compiler.errors import CompileError

        raise CompileError(
            f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to --backend auto (the measured "
            "selection), which this compile does not use",
            hint=f"add --backend auto, or drop {', '.join(given)}",
        )


def _sign(args, folder: Path) -> None:
    if args.sign is not None:
        from edgekiln.runtime.signing import sign_artifact

        print(f"signed: {sign_artifact(folder, args.sign)}")


def _compile_auto(args) -> int:
    from edgekiln.compiler.errors import CompileError
    from edgekiln.compiler.selection import SelectionConfig, select_build
    from edgekiln.targets import load_profile

    if args.output is None or args.save_recipe is not None:
        raise CompileError(
            "--backend auto builds and measures candidates into -o DIR",
            hint="pass -o DIR; the winner's recipe is stored as DIR/recipe.toml",
        )
    budget, args.backend, args.accuracy_budget = args.accuracy_budget, None, None
    static_sequences, args.sequence_buckets = args.sequence_buckets, None  # for the static-shape twins
    if args.auto_prune_flops and args.prune_flops is None:
        args.prune_flops = args.auto_prune_flops[0]  # so the recipe takes --recover and the data
    full = recipe_from_args(args)  # pruning and recovery become candidate levels, not the base
    base = full.model_copy(update={"prune": None, "recover": None})
    config = SelectionConfig(
        accuracy_budget=budget,
        latency_budget_ms=args.latency_budget,
        backends=args.auto_backends,
        timing=args.auto_timing,
        sequence=args.auto_sequence,
        keep_candidates=args.auto_keep_candidates,
        recover=full.recover,
        prune_levels=args.auto_prune_flops
        or ((full.prune.flops,) if full.prune is not None and full.prune.flops else ()),
        static_sequences=static_sequences,
    )
    result, winner = select_build(
        args.model, load_profile(args.target), args.output, base, config, force=args.force, progress=show_progress
    )
    print_result(result)
    print(f"auto: kept {winner.name} of the candidates in {result.path / 'reports' / 'selection.json'}")
    _sign(args, result.path)
    return 0


def recipe_from_args(args):
    """--recipe FILE (or the defaults), then every flag the user gave, through the recipe's one flag table."""
    from edgekiln.compiler.recipe import FLAGS, Recipe

    base = Recipe.from_file(args.recipe) if args.recipe is not None else None
    flags = {name: getattr(args, name) for name in FLAGS if getattr(args, name, None) is not None}
    if "backend_options" in flags:
        flags["backend_options"] = dict(flags["backend_options"])
    if "labels" in flags:
        from edgekiln.compiler.sources.timm_model import read_labels

        flags["labels"] = read_labels(flags["labels"])
    if "input_shapes" in flags:
        from edgekiln.compiler.input_shapes import shapes_from_flags

        flags["input_shapes"] = shapes_from_flags(flags["input_shapes"])
    return Recipe.from_flags(base, **flags)


def print_result(result) -> None:
    from edgekiln.runtime.reports.schema import read_reports

    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    manifest = result.manifest
    reports = read_reports(result.path, [p.name for p in manifest.passes])
    print(
        f"artifact {manifest.artifact_id}: {manifest.task.value}, {manifest.backend}, "
        f"{manifest.target.name}, {manifest.precision.value}"
    )
    built = reports.built_fidelity()
    if built is not None:
        print(f"fidelity: {built.summary()}")
    if manifest.tokenizer is not None and manifest.tokenizer.pad_sensitive:
        print(
            "note: this model's answer for a text changes with the padding around it (it does not mask it out), "
            "so the runtime runs it one text per call (reports/verify_fidelity.json: details.padding)",
            file=sys.stderr,
        )
    pruned = reports.other.get("pruning")
    if pruned is not None:
        drop = (
            "n/a (no --eval-data)" if pruned.get("accuracy_drop") is None else f"{pruned['accuracy_drop']:.2f} points"
        )
        print(f"pruning: FLOPs -{pruned['flops_reduction']:.1%}, {pruned.get('metric', 'accuracy')} drop {drop}")
    tvm = reports.fidelity.get("lower_tvm")
    if tvm is not None:
        details = tvm.details
        print(
            f"tvm: buckets (batch, sequence) {[tuple(b) for b in details['buckets']]}, {details['tune_trials']} "
            f"tuning trials; checked on {details['checked_on']}"
        )
        _say_tvm_cut(details)
        database = details.get("tuning_database")
        if database:
            print(
                f"tvm: {database['kernels_from_database']} of {database['kernels']} kernels scheduled from the "
                f"tuning database ({database['records']} records, {(database['fingerprint'] or 'none')[:12]})"
            )
    if reports.quantization is not None:
        print(reports.quantization.summary())
    print(f"written to {result.path} (recipe: {result.path / 'recipe.toml'})")


def _say_tvm_cut(details: dict) -> None:
    """Texts past the longest sequence bucket are cut there: say so when the model takes more."""
    longest = max((sequence for _, sequence in details["buckets"] if sequence), default=None)
    takes = details.get("model_max_length")
    if longest is not None and takes is not None and longest < takes:
        lengths = sorted({sequence for _, sequence in details["buckets"] if sequence} | {takes})
        print(
            f"tvm: texts longer than {longest} tokens are cut to {longest}, though the model takes {takes}: "
            f"for longer ones add a bucket, e.g. --sequence-buckets {','.join(map(str, lengths))}"
        )
