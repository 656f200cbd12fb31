"""Commands that need the compiler (torch, transformers, onnx): compile, quickstart."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from edgekiln.runtime.bench import BenchConfig, format_table

from .artifact_commands import run_bench, save_bench_report
from .parsing import int_list, positive_int


def register(commands) -> None:
    build = commands.add_parser("compile", help="compile a model for a target into an artifact folder")
    build.add_argument("model", help="Hugging Face model folder, or an .onnx file")
    build.add_argument("--target", default="host", help="profile name (see `edgekiln targets`), host, or a .toml file")
    build.add_argument("-o", "--output", type=Path, required=True, help="artifact folder to write")
    build.add_argument("--backend", help="onnxruntime, openvino or tvm (default: the target's first preference "
                                         "that can do the job)")
    build.add_argument("--force", action="store_true", help="replace an existing artifact folder")
    build.add_argument("--task", help="override the detected task: text-classification, "
                                      "token-classification, sentence-embedding")
    build.add_argument("--pooling", help="pooling for a bare encoder: mean, cls, max, mean-sqrt-len")
    build.add_argument("--exporter", default="auto", help="auto (dynamo, then torchscript), dynamo, torchscript")
    build.add_argument("--opset", type=positive_int, default=18)
    build.add_argument("--no-cache", action="store_true", help="recompute every pass")
    build.add_argument("--precision", default="fp32", choices=["fp32", "bf16"],
                       help="float precision: bf16 runs OpenVINO in bf16 on CPUs with AVX-512 BF16 or AMX")
    tvm = build.add_argument_group("tvm")
    tvm.add_argument("--sequence-buckets", type=int_list, help="sequence lengths to compile (default: the "
                                                              "profile's, e.g. 32,64,128); requests are padded up")
    tvm.add_argument("--tune-trials", type=int, default=0, help="MetaSchedule trials to tune kernels on this "
                                                                "machine (0: untuned); the database is cached")
    prune = build.add_argument_group("structured pruning (fine-tuned BERT-family classifiers)")
    prune.add_argument("--prune-heads", type=float, help="fraction of attention heads to remove, e.g. 0.3")
    prune.add_argument("--prune-ffn", type=float, help="fraction of FFN neurons to remove, e.g. 0.4")
    prune.add_argument("--prune-flops", type=float, help="fraction of encoder FLOPs to remove (sets both ratios)")
    prune.add_argument("--prune-importance", default="taylor", choices=["taylor", "taylor-label-free", "magnitude"],
                       help="head/neuron scores: taylor (needs --data), taylor-label-free, magnitude")
    prune.add_argument("--recover", action="store_true", help="fine-tune the pruned model on --data, distilling "
                                                              "from the unpruned one; accuracy on --eval-data")
    prune.add_argument("--recover-epochs", type=positive_int, default=1)
    prune.add_argument("--recover-examples", type=positive_int, default=60000,
                       help="training examples sampled for recovery (default 60000)")
    prune.add_argument("--recover-lora", action="store_true", help="recover with LoRA instead of all weights")
    prune.add_argument("--data", help="labelled training data for importance scores and recovery: PATH[:SPLIT]")
    quant = build.add_argument_group("quantization")
    quant.add_argument("--quantize", default="none", help="none, dynamic, static, or auto (the fastest int8 "
                                                         "within the budget; float if int8 is not faster)")
    quant.add_argument("--calibration", help="calibration data: a dataset (PATH[:SPLIT]) or a .txt of text lines")
    quant.add_argument("--calibration-samples", type=positive_int, default=128)
    quant.add_argument("--calibration-method", default="minmax", help="minmax, percentile, entropy")
    quant.add_argument("--accuracy-budget", type=float, help="allowed drop in points on --eval-data")
    quant.add_argument("--eval-data", help="labelled data for the accuracy budget: PATH[:SPLIT]")
    build.set_defaults(handler=cmd_compile)

    quick = commands.add_parser("quickstart", help="compile, check and benchmark all-MiniLM-L6-v2 on this machine")
    quick.add_argument("-o", "--output", type=Path, default=Path("edgekiln-out/quickstart-minilm"))
    quick.add_argument("--batch", type=int_list, default=(1,))
    quick.add_argument("--seq", type=int_list, default=(128,))
    quick.add_argument("--runs", type=positive_int, default=30)
    quick.set_defaults(handler=cmd_quickstart)


def _progress(message: str) -> None:
    print(f"  {message}", file=sys.stderr)


def cmd_compile(args) -> int:
    from edgekiln.compiler import compile

    result = compile(args.model, args.target, args.output, backend=args.backend, force=args.force, task=args.task,
                     pooling=args.pooling, exporter=args.exporter, opset=args.opset, cache=not args.no_cache,
                     quantize=args.quantize, calibration=args.calibration,
                     calibration_samples=args.calibration_samples, calibration_method=args.calibration_method,
                     accuracy_budget=args.accuracy_budget, eval_data=args.eval_data, tune_trials=args.tune_trials,
                     sequence_buckets=args.sequence_buckets, prune=_prune_config(args),
                     recover=_recovery_config(args), train_data=args.data, precision=args.precision,
                     progress=_progress)
    _print_result(result)
    return 0


def _prune_config(args):
    from edgekiln.compiler.pruning.config import Importance, PruneConfig

    if args.prune_heads is None and args.prune_ffn is None and args.prune_flops is None:
        return None
    return PruneConfig(heads=args.prune_heads, ffn=args.prune_ffn, flops=args.prune_flops,
                       importance=Importance(args.prune_importance))


def _recovery_config(args):
    from edgekiln.compiler.pruning.config import RecoveryConfig

    if not args.recover:
        return None
    return RecoveryConfig(epochs=args.recover_epochs, max_train_examples=args.recover_examples, lora=args.recover_lora)


def _print_result(result) -> None:
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    manifest = result.manifest
    fidelity = json.loads((result.path / "reports" / "verify_fidelity.json").read_text())
    print(f"artifact {manifest.artifact_id}: {manifest.task.value}, {manifest.backend.value}, "
          f"{manifest.target.name}, {manifest.precision.value}")
    print(f"fidelity vs {fidelity['reference']}: max abs diff {fidelity['max_abs_diff']:.2e}, "
          f"min cosine {fidelity['min_cosine']:.6f}")
    pruned = result.path / "reports" / "pruning.json"
    if pruned.is_file():
        p = json.loads(pruned.read_text())
        drop = "n/a (no --eval-data)" if p["accuracy_drop"] is None else f"{p['accuracy_drop']:.2f} points"
        print(f"pruning: encoder FLOPs -{p['flops_reduction']:.1%}, {p.get('metric', 'accuracy')} drop {drop}")
    lowered = result.path / "reports" / "lower_tvm.json"
    if lowered.is_file():
        t = json.loads(lowered.read_text())
        print(f"tvm: buckets (batch, sequence) {[tuple(b) for b in t['buckets']]}, {t['tune_trials']} tuning trials; "
              f"max abs diff {t['max_abs_diff']:.2e} vs onnxruntime, checked on {t['checked_on']}")
    quantized = result.path / "reports" / "quantize.json"
    if quantized.is_file():
        q = json.loads(quantized.read_text())
        drop = "n/a" if q["accuracy_drop"] is None else f"{q['accuracy_drop']:.2f} points"
        print(f"quantization: kept {q['chosen']}, accuracy drop {drop}, speed-up {q['speedup']:.2f}x over float"
              f"{' (int8 was slower than float here)' if q['int8_slower_than_float'] else ''}")
    print(f"written to {result.path}")


def cmd_quickstart(args) -> int:
    from edgekiln.compiler.quickstart import compile_default, model_folder, sentence_fidelity

    print("1/3 compiling all-MiniLM-L6-v2 for this machine", file=sys.stderr)
    result = compile_default(args.output, _progress)
    _print_result(result)
    print("2/3 checking sentence embeddings against PyTorch", file=sys.stderr)
    fidelity = sentence_fidelity(result.path, model_folder())
    print(f"sentence embeddings vs PyTorch on {fidelity['sentences']} sentences: min cosine "
          f"{fidelity['min_cosine']:.6f}, mean {fidelity['mean_cosine']:.6f} (need >= {fidelity['threshold']})")
    print("3/3 benchmarking against PyTorch eager", file=sys.stderr)
    config = BenchConfig(batches=args.batch, sequences=args.seq, runs=args.runs)
    report = run_bench(result.path, config, threads=None, against=str(model_folder()))
    print(format_table(report))
    save_bench_report(result.path, report)
    print(f"\nartifact: {result.path}\ntry:      edgekiln run {result.path} \"a sentence to embed\"")
    return 0
