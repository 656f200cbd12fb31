"""`--prune-flops` on an image classifier (a Hugging Face image-classification CNN folder, or a torch
module with a declared preprocessing): score, prune conv channels to the FLOPs target, measure,
recover, and hand the export an in-memory module with the source's preprocessing and labels.

A pruned Hugging Face CNN cannot be saved back as a Hugging Face folder (its config fixes the
widths), so the pruned model flows on as a torch-module source (`from_image_module`) carrying the
folder's image preprocessing and id2label: the artifact takes the same images and answers with the
same labels. The pruning is cached like a pass (image_cache.py); the export and later passes are cached
by the pruned module's content (state dict and structure)."""

from __future__ import annotations

import copy
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgekiln.runtime.hashing import sha256_json
from edgekiln.runtime.manifest import PassRecord, Task

from ..errors import CompileError
from ..sources.base import ModelSource
from .cnn_data import ImageData, batches, image_encoder_for, measure, model_labels, predictions, resolve_image_data
from .cnn_search import accumulate_gradients, prune_to_flops
from .config import Importance, PruneConfig, RecoveryConfig
from .image_cache import cache_key, load_result, store_result
from .vit import is_vision_transformer, prune_vit


def is_image_classifier(model: Any, source_recipe) -> bool:
    """A torch module declared with image preprocessing, or a Hugging Face image-classification folder."""
    if source_recipe is not None and source_recipe.image is not None and not isinstance(model, (str, Path)):
        return True
    if not isinstance(model, (str, Path)):
        return False
    config = Path(str(model)).expanduser() / "config.json"
    try:
        architectures = json.loads(config.read_text()).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return False
    return any("ForImageClassification" in str(name) for name in architectures)


def prune_image_classifier(
    model: Any, source_recipe, config: PruneConfig, recovery: RecoveryConfig | None, *, data: dict, store, say
) -> tuple[ModelSource, dict, PassRecord]:
    started = time.perf_counter()
    _check_config(config, recovery)
    source = _load(model, source_recipe)
    images = resolve_image_data(data, config, recovery)
    key = cache_key(source, config, recovery, images)
    folder, cached = store.run(key, lambda work: _prune(source, config, recovery, images, work, say), say=say)
    if cached:
        say("prune (cached)")
    pruned, report = load_result(folder, source)
    out = _pruned_source(pruned, source)
    record = PassRecord(
        name="prune",
        config=config.model_dump(mode="json"),
        input_sha256=source.content_hash,
        output_sha256=out.content_hash,
        seconds=round(time.perf_counter() - started, 3),
        cached=cached,
    )
    return out, report, record


def _prune(source: ModelSource, config: PruneConfig, recovery, images: ImageData, work: Path, say) -> None:
    started = time.perf_counter()
    module = copy.deepcopy(source.torch.build())  # a module from the Python API stays as the user gave it
    example = source.torch.example()
    with torch_no_grad():
        classes = int(module(*example).shape[-1])
    labels = model_labels(source.labels, classes)
    encoder = image_encoder_for(source.image)
    teacher = copy.deepcopy(module).eval()
    teacher_top = predictions(teacher, images.dev, encoder, labels)[0] if images.dev is not None else None
    before = measure(teacher, teacher_top, images, encoder, labels)
    scoring = _scoring(images, config, encoder, labels, say)
    searched, cut = _cut(module, source, example, classes, config, scoring[1], say)
    pruned = searched.model
    after = measure(pruned, teacher_top, images, encoder, labels)
    recovered = None
    if recovery is not None:
        from .cnn_recovery import recover_images

        say(f"prune: recovery, distilling from the unpruned model ({recovery.epochs} epoch(s))")
        recovered = recover_images(pruned, teacher, images, encoder, labels, teacher_top, recovery, say)
    final = measure(pruned, teacher_top, images, encoder, labels)
    report = _report(searched, config, images, (before, after, final), recovered, scoring[0])
    report.update(cut)
    report["seconds"] = round(time.perf_counter() - started, 1)
    store_result(work, pruned, cut["kind"], searched.replay, report)


def torch_no_grad():
    import torch

    return torch.no_grad()


def _cut(module, source: ModelSource, example, classes: int, config: PruneConfig, scoring, say):
    """(the pruned model, what the report says about the cut): ViT heads and MLP, or conv channels."""
    from .timm_vit import is_timm_vit, prune_timm_vit

    if is_vision_transformer(module) or is_timm_vit(module):
        say(f"prune: removing attention heads and MLP neurons for {config.flops:.0%} of the encoder FLOPs")
        prune = prune_timm_vit if is_timm_vit(module) else prune_vit
        searched, layers, encoder = prune(module, example, scoring, config)
        reduction = 1 - encoder["encoder_flops"]["after"] / encoder["encoder_flops"]["before"]
        return searched, {"kind": "vit-heads-mlp", "flops_reduction": reduction, "layers": layers, **encoder}
    _refuse_non_cnn(module, source)
    if scoring is not None:
        accumulate_gradients(module, scoring, label_free=config.importance is Importance.TAYLOR_LABEL_FREE)
    say(f"prune: searching the channel ratio that removes {config.flops:.0%} of the FLOPs")
    searched = prune_to_flops(module, example, config.importance, config.flops, classes, config.multiple_of or 1)
    reduction = 1 - searched.ops[1] / searched.ops[0]
    return searched, {
        "kind": "conv-channels",
        "flops_reduction": reduction,
        "layers": _conv_layers(module, searched.model),
    }


def _check_config(config: PruneConfig, recovery: RecoveryConfig | None) -> None:
    if recovery is not None and recovery.lora:
        raise CompileError(
            "--recover-lora recovers transformer text encoders; image classifiers recover all their weights",
            hint="drop --recover-lora",
        )
    if config.flops is None:
        raise CompileError(
            "image classifiers are pruned to a FLOPs target",
            hint="pass --prune-flops F (e.g. 0.4); --prune-heads/--prune-ffn are for transformer text encoders",
        )


def _load(model, source_recipe) -> ModelSource:
    from ..sources import resolve_source

    with tempfile.TemporaryDirectory(prefix="edgekiln-prune-") as work:
        source = resolve_source(
            model,
            work_dir=Path(work),
            task=source_recipe.task if source_recipe else None,
            image=source_recipe.image if source_recipe else None,
            labels=source_recipe.labels if source_recipe else None,
            output_names=source_recipe.output_names if source_recipe else None,
            weights=source_recipe.weights if source_recipe else None,
        )
    if source.task is not Task.IMAGE_CLASSIFICATION or source.torch is None or source.image is None:
        raise CompileError(f"{source.description} is not an image classifier edgekiln can prune")
    return source


def _refuse_non_cnn(module, source: ModelSource) -> None:
    import torch

    convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    attention = any(type(m).__name__.endswith(("SelfAttention", "Attention")) for m in module.modules())
    if attention:
        raise CompileError(
            f"--prune-flops on {source.description}: its attention layers do not have the layout edgekiln cuts "
            "(separate Q/K/V projections and a two-Linear MLP per layer, as ViT and DeiT)",
            hint="compile it without --prune-flops, or prune a CNN (ResNet, MobileNetV2, ConvNeXt …) or a ViT",
        )
    if not convs:
        raise CompileError(
            f"--prune-flops prunes conv channels; {source.description} has no Conv2d",
            hint="pass a CNN image classifier",
        )


def _scoring(images: ImageData, config: PruneConfig, encoder, labels, say):
    """(what the report says about the scores, the image batches to score with; None for magnitude)."""
    if config.importance is Importance.MAGNITUDE:
        return None, None
    from .cnn_data import sample

    scoring = sample(images.scoring, config.samples, config.seed)
    label_free = config.importance is Importance.TAYLOR_LABEL_FREE
    say(f"prune: Taylor importance on {len(scoring)} images ({'model-labelled' if label_free else 'labelled'})")
    info = {"images": len(scoring), "data": scoring.source, "labels": "model's predictions" if label_free else "gold"}
    return info, batches(scoring, encoder, labels, gold=not label_free)


def _conv_layers(module, pruned) -> list[dict]:
    import torch

    def widths(model) -> dict[str, int]:
        return {name: m.out_channels for name, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)}

    full, cut = widths(module), widths(pruned)
    return [{"layer": name, "channels": [full[name], cut.get(name, full[name])]} for name in full]


def _report(searched, config: PruneConfig, images: ImageData, measured, recovered, scored) -> dict:
    before, after, final = measured
    accuracy = [m.get("accuracy") if m else None for m in measured]
    return {
        "metric": "accuracy",
        "accuracy_before": accuracy[0],
        "accuracy_after_pruning": accuracy[1],
        "accuracy_after_recovery": accuracy[2] if recovered else None,
        "accuracy_drop": None if accuracy[0] is None or accuracy[2] is None else accuracy[0] - accuracy[2],
        "agreement_with_unpruned": {
            "after_pruning": (after or {}).get("agreement"),
            "final": (final or {}).get("agreement"),
        },
        "macs": {"before": int(searched.ops[0]), "after": int(searched.ops[1])},
        "parameters": {"before": int(searched.params[0]), "after": int(searched.params[1])},
        "channel_ratio": None if searched.ratio is None else round(searched.ratio, 4),
        "search_trials": searched.trials,
        "importance": scored,
        "config": config.model_dump(mode="json"),
        "recovery": recovered,
        "data": {
            name: d.source if d else None
            for name, d in zip(("train", "dev", "calibration"), (images.train, images.dev, images.calibration))
        },
        "before": before,
    }


def _pruned_source(pruned, source: ModelSource) -> ModelSource:
    from ..sources.module_image import from_image_module

    out = from_image_module(pruned, source.image, source.labels, Task.IMAGE_CLASSIFICATION, source.torch.output_names)
    description = f"{source.description} (pruned)"
    content = sha256_json({"pruned": out.content_hash, "from": source.content_hash})
    return replace(out, description=description, content_hash=content, notes=source.notes)
