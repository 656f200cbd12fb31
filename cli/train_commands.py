"""Commands around labelled data: finetune, eval."""

from __future__ import annotations

import sys
from pathlib import Path

from edgekiln.runtime.errors import InputError

from .artifact_commands import check_writable, write_json
from .parsing import fraction, positive_float, positive_int, unit_float

TASKS = ("text-classification", "token-classification", "image-classification")


def register(commands) -> None:
    tune = commands.add_parser(
        "finetune",
        help="fine-tune a Hugging Face text encoder or image classifier, or a timm classifier, on labelled data "
        "(full or LoRA)",
    )
    tune.add_argument(
        "model",
        help="Hugging Face model folder: a text encoder (BERT, MiniLM, ...) or an image classifier "
        "with its preprocessor_config.json (ViT, ConvNeXt, ResNet, MobileNetV2, ...); a timm folder; "
        "or timm:NAME with --weights",
    )
    tune.add_argument("--weights", help="timm:NAME models: the weights file (.safetensors, or a .pth state dict)")
    tune.add_argument("--task", choices=TASKS, help="default: the training data's (a folder of class folders: images)")
    tune.add_argument("--data", "--train", required=True, help="training data: PATH or PATH:SPLIT")
    tune.add_argument(
        "--eval-data", "--eval", help="dev data for per-epoch evaluation (default: hold out --val-fraction)"
    )
    tune.add_argument("-o", "--output", type=Path, required=True, help="checkpoint folder to write")
    tune.add_argument("--lora", action="store_true", help="train LoRA adapters (merged into the weights on save)")
    tune.add_argument("--lora-rank", type=positive_int, help="LoRA rank, with --lora (default 8)")
    tune.add_argument("--epochs", type=positive_int, default=3)
    tune.add_argument("--lr", type=positive_float, help="learning rate (default 5e-5 full, 5e-4 LoRA)")
    tune.add_argument("--batch-size", type=positive_int, default=32)
    tune.add_argument("--max-length", type=positive_int, default=128)
    tune.add_argument("--max-train", type=positive_int, help="use a seeded sample of this many training examples")
    tune.add_argument("--val-fraction", type=fraction, default=0.1, help="held out when no --eval-data (0 < F < 1)")
    tune.add_argument("--seed", type=int, default=0)
    tune.add_argument("--threads", type=positive_int, help="PyTorch threads (default: all cores)")
    tune.add_argument("--force", action="store_true", help="replace an earlier fine-tuning output")
    tune.add_argument(
        "--augment",
        choices=("standard", "none"),
        help="images: random resized crop + horizontal flip on the training split (default standard)",
    )
    tune.add_argument(
        "--crop-scale", type=unit_float, help="images: smallest crop, as a fraction of the area (default 0.08)"
    )
    tune.add_argument("--no-flip", action="store_true", help="images: no horizontal flips (digits, text)")
    _columns(tune)
    tune.set_defaults(handler=cmd_finetune)

    check = commands.add_parser("eval", help="evaluate a checkpoint or an artifact on labelled data")
    check.add_argument("target", type=Path, help="artifact folder, Hugging Face checkpoint folder, or timm:NAME")
    check.add_argument(
        "--data",
        required=True,
        help="PATH or PATH:SPLIT (images: a folder of class folders, or a CSV/TSV with path and label columns)",
    )
    check.add_argument("--against", type=Path, help="a second artifact or checkpoint evaluated on the same data")
    check.add_argument("--weights", help="the weights file of a timm:NAME target or --against model")
    check.add_argument("--labels", type=Path, help="that timm model's class names, one a line (or a JSON list)")
    check.add_argument("--batch-size", type=positive_int, default=32)
    check.add_argument("--json", metavar="OUT", type=Path, help="write the results as JSON to OUT")
    check.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="leave images that cannot be decoded out of the evaluation, and list them (default: stop at the first)",
    )
    _columns(check)
    check.set_defaults(handler=cmd_eval)


def _columns(parser) -> None:
    parser.add_argument("--text-column", help="text column of TSV/CSV/JSONL data (default: sentence, text, ...)")
    parser.add_argument("--label-column", help="label column (default: label, labels, class, ...)")
    parser.add_argument(
        "--data-format",
        help="tsv, csv, jsonl, conll, hf-disk or image-folder, for data whose name "
        "does not say (default: the extension, else the first lines)",
    )


def cmd_finetune(args) -> int:
    from edgekiln.compiler.data import DataTask, load_dataset
    from edgekiln.compiler.finetune import FinetuneConfig, LoraSettings, finetune
    from edgekiln.compiler.finetune.state import partial_dir, saved_position
    from edgekiln.compiler.finetune.tunable import check_model_path

    check_model_path(args.model, args.weights)  # before the data is read
    if args.lora_rank is not None and not args.lora:
        raise InputError("--lora-rank sets the rank of LoRA adapters", hint="add --lora, or drop --lora-rank")
    columns = {"text_column": args.text_column, "label_column": args.label_column, "format": args.data_format}
    train = load_dataset(args.data, task=DataTask(args.task) if args.task else None, **columns)
    task = train.task
    dev = load_dataset(args.eval_data, task=task, **columns) if args.eval_data else None
    config = FinetuneConfig(
        augment=_augment(args, task),
        task=task,
        epochs=args.epochs,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        max_length=args.max_length,
        seed=args.seed,
        threads=args.threads,
        max_train_examples=args.max_train,
        validation_fraction=args.val_fraction,
        lora=LoraSettings(rank=args.lora_rank or 8, alpha=2 * (args.lora_rank or 8)) if args.lora else None,
    )
    try:
        result = finetune(
            args.model,
            args.output,
            train_data=train,
            eval_data=dev,
            config=config,
            weights=args.weights,
            force=args.force,
        )
    except KeyboardInterrupt:
        work = partial_dir(args.output.expanduser().resolve())
        position = saved_position(work)
        if position is not None:
            print(
                f"edgekiln: training state is saved every {FinetuneConfig.model_fields['save_every'].default} steps "
                f"and at each epoch's end; the last save, in {work}, is at {position}: the same command resumes "
                "from there",
                file=sys.stderr,
            )
        raise
    print(
        f"checkpoint: {result.path}\nbest dev {result.report['metric']}: {result.report['best_metric']:.4f} "
        f"(epoch {result.report['best_epoch']})\nnext: edgekiln compile {result.path} -o ARTIFACT"
    )
    return 0


def _augment(args, task):
    """The augmentation settings from the flags: standard for image data unless --augment none."""
    from edgekiln.compiler.errors import CompileError
    from edgekiln.compiler.finetune import AugmentSettings
    from edgekiln.compiler.tasks import compiler_task

    asked = args.augment == "standard" or args.crop_scale is not None or args.no_flip
    if compiler_task(task).text_input:
        if asked:
            raise CompileError(
                "--augment, --crop-scale and --no-flip apply to image data", hint=f"the data {args.data} is text"
            )
        return None
    if args.augment == "none":
        if args.crop_scale is not None or args.no_flip:
            raise CompileError("--crop-scale and --no-flip need augmentation", hint="drop --augment none")
        return None
    return AugmentSettings(crop_scale=(args.crop_scale or 0.08, 1.0), flip=not args.no_flip)


def cmd_eval(args) -> int:
    from edgekiln.compiler.data import load_dataset
    from edgekiln.compiler.evaluate import evaluate, timm_options
    from edgekiln.compiler.evaluate.text_report import format_evaluation
    from edgekiln.compiler.sources.timm_model import read_labels

    if args.json:
        check_writable(args.json)  # before the evaluation runs, not after
    labels = None if args.labels is None else read_labels(args.labels)
    timm_options(args.target, args.against, args.weights, labels)  # before the data is read
    dataset = load_dataset(
        args.data, text_column=args.text_column, label_column=args.label_column, format=args.data_format
    )
    report = evaluate(
        args.target,
        dataset,
        against=args.against,
        batch_size=args.batch_size,
        weights=args.weights,
        labels=labels,
        skip_bad_images=args.skip_bad_images,
    )
    print(format_evaluation(report))
    if args.json:
        write_json(args.json, report)
    return 0
