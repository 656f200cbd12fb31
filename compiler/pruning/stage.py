"""Pruning a fine-tuned Hugging Face classifier: score, plan, cut, evaluate, recover, save a folder
the rest of the compiler takes like any other checkpoint. Cached by content like a pass."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from edgekiln.runtime.hashing import sha256_json

from ..cache import PassCache
from ..data import Dataset, DataTask
from ..errors import CompileError
from ..sources.hf import folder_hashes
from ..tasks import compiler_task
from .config import Importance, PruneConfig, RecoveryConfig
from .evaluation import (
    accuracy_points,
    check_labels,
    encoder_for,
    importance_batches,
    task_of,
)
from .flops import encoder_flops, encoder_parameters
from .importance import importance_scores
from .plan import check_flops_target, plan_flops, plan_ratios
from .structure import head_size, shape_of

VERSION = 1
MODEL_DIR, REPORT = "model", "pruning.json"


@dataclass(frozen=True)
class PruneJob:
    config: PruneConfig
    recovery: RecoveryConfig | None
    train: Dataset | None  # labelled: Taylor scores and recovery
    dev: Dataset | None  # labelled: accuracy before/after
    calibration: Dataset | None  # text for label-free scores


def prune_folder(folder: Path, job: PruneJob, store: PassCache, say: Callable[[str], None]) -> tuple[Path, dict, bool]:
    _check(job)
    if job.train is not None:  # calibration text is used only without labelled data: keep it out of the key
        job = replace(job, calibration=None)
    key = sha256_json(
        {
            "stage": "prune",
            "version": VERSION,
            "model": folder_hashes(folder),
            "config": job.config.model_dump(mode="json"),
            "recovery": job.recovery.model_dump(mode="json") if job.recovery else None,
            "data": [d.fingerprint() if d else None for d in (job.train, job.dev, job.calibration)],
        }
    )
    out, cached = store.run(key, lambda work: _prune(folder, job, work, say), say=say)
    if cached:
        say("prune (cached)")
    return out / MODEL_DIR, json.loads((out / REPORT).read_text()), cached


def _check(job: PruneJob) -> None:
    config = job.config
    if config.importance is Importance.TAYLOR and job.train is None:
        raise CompileError(
            "Taylor importance needs labelled calibration data",
            hint="pass --data TRAIN, or --prune-importance taylor-label-free with --calibration TEXT, "
            "or --prune-importance magnitude",
        )
    if config.importance is Importance.TAYLOR_LABEL_FREE and job.train is None and job.calibration is None:
        raise CompileError("label-free importance needs calibration text", hint="pass --calibration or --data")
    if job.recovery is not None and job.train is None and job.calibration is None:
        raise CompileError(
            "--recover needs training text: labelled --data, or unlabelled --calibration text "
            "(then labelled by the unpruned model)",
            hint="pass --data TRAIN or --calibration TEXT",
        )


def _prune(folder: Path, job: PruneJob, work: Path, say) -> None:
    from ..finetune.model import load_for_task, save_checkpoint
    from .apply import heads_fixed_reason

    started = time.perf_counter()
    task, labels = task_of(folder)
    check_labels((job.train, job.dev), labels)
    model = load_for_task(folder, task, labels)
    encoder = encoder_for(folder, work)
    full = shape_of(model)
    fixed = heads_fixed_reason(model)
    if fixed and job.config.heads:
        raise CompileError(
            f"--prune-heads: the heads of this model cannot be removed ({fixed})",
            hint="prune its FFN neurons: --prune-ffn, or --prune-flops (then FFN only)",
        )
    if job.config.flops is not None:  # refuse an impossible target before scoring
        dims = (model.config.hidden_size, head_size(model), job.config.flops_sequence)
        check_flops_target(full, job.config.flops, job.config.multiple_of, dims, bool(fixed))
    teacher = copy.deepcopy(model) if job.recovery else None
    say(f"prune: scoring {sum(full.heads)} heads and {sum(full.widths)} FFN neurons ({job.config.importance.value})")
    scores = importance_scores(model, importance_batches(job, task, labels, encoder), job.config.importance)
    plan = _plan(model, scores, job.config, bool(fixed))
    before = accuracy_points(model, job.dev, labels, encoder)
    from .apply import apply_plan

    apply_plan(model, plan)
    after = accuracy_points(model, job.dev, labels, encoder)
    recovered, recovery_info = after, None
    if job.recovery is not None:
        from .recovery import recover

        say(f"prune: recovery fine-tune, distilling from the unpruned model ({job.recovery.epochs} epoch(s))")
        train_set, dev_set, recovery = _recovery_data(job, teacher, labels, encoder)
        progress = recover(
            model,
            teacher,
            train_set=train_set,
            dev_set=dev_set,
            labels=labels,
            encoder=encoder,
            model_folder=folder,
            work=work / "recovery",
            config=recovery,
            log=say,
        )
        recovered = progress.best_metric * 100 if job.dev is not None else None
        recovery_info = {
            "epochs": progress.history,
            "kept_epoch": progress.best_epoch,  # 0: the pruned model before recovery
            "seconds": round(progress.seconds, 1),
            "config": recovery.model_dump(mode="json"),
            "train": train_set.source,
            "selected_on": dev_set.source,
        }
        (work / "recovery" / "best").rename(work / MODEL_DIR)
    else:
        save_checkpoint(model, folder, work / MODEL_DIR)
    report = _report(model.config, full, plan, job, (before, after, recovered), recovery_info, task)
    report["heads_kept_because"] = fixed
    report["seconds"] = round(time.perf_counter() - started, 1)
    (work / REPORT).write_text(json.dumps(report, indent=2))


def _recovery_data(job: PruneJob, teacher, labels, encoder):
    """Labelled data as given; otherwise the calibration text labelled by the unpruned model, with a
    held-out part for choosing the best epoch, and pure distillation."""
    if job.train is not None and job.dev is not None:
        return job.train, job.dev, job.recovery
    if job.train is not None:
        from ..data import split_off

        train, held_out = split_off(job.train, 0.1, job.config.seed)
        return train, held_out, job.recovery
    from .pseudo_labels import pseudo_labelled

    train, held_out = pseudo_labelled(job.calibration, teacher, labels, encoder, job.config.seed)
    return train, job.dev or held_out, job.recovery.model_copy(update={"alpha": 1.0})


def _plan(model, scores, config: PruneConfig, heads_fixed: bool):
    heads, neurons = scores
    if config.flops is not None:
        dims = (model.config.hidden_size, head_size(model), config.flops_sequence)
        return plan_flops(heads, neurons, config.flops, config.multiple_of, dims, heads_fixed)
    return plan_ratios(heads, neurons, config.heads or 0.0, config.ffn or 0.0, config.multiple_of)


def _report(model_config, full, plan, job: PruneJob, accuracy, recovery, task: DataTask) -> dict:
    hidden = model_config.hidden_size
    size = hidden // model_config.num_attention_heads
    sequence = job.config.flops_sequence
    flops = [encoder_flops(s, hidden, size, sequence) for s in (full, plan.shape)]
    params = [encoder_parameters(s, hidden, size) for s in (full, plan.shape)]
    before, after, recovered = accuracy
    metric = compiler_task(task).metric
    return {
        "flops_reduction": 1 - flops[1] / flops[0],
        "accuracy_drop": None if before is None or recovered is None else before - recovered,
        "metric": metric,
        "accuracy_before": before,
        "accuracy_after_pruning": after,
        "accuracy_after_recovery": recovered if job.recovery else None,
        "encoder_flops": {"before": flops[0], "after": flops[1], "sequence": sequence},
        "encoder_parameters": {"before": params[0], "after": params[1]},
        "layers": [
            {"layer": i, "heads": [h0, h1], "ffn": [w0, w1], "kept_heads": list(kept)}
            for i, (h0, h1, w0, w1, kept) in enumerate(
                zip(full.heads, plan.shape.heads, full.widths, plan.shape.widths, plan.heads)
            )
        ],
        "config": job.config.model_dump(mode="json"),
        "recovery": recovery,
        "data": {
            name: d.source if d else None
            for name, d in (("train", job.train), ("dev", job.dev), ("calibration", job.calibration))
        },
    }
