"""One numerical comparison for every pass that checks a model against a reference.

Dense outputs (embeddings, raw tensors) are compared by max absolute difference and the cosine of
each row. Classifier outputs (logits of a text or token classifier) are compared the way their
users read them: top-1 agreement, and the error as a share of each row's logit range — the cosine of
two 2-class logit vectors says little. A disagreement counts only when the reference scored the
candidate's choice lower by more than the allowed relative error (a near-tie may flip).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
from pydantic import Field

from edgekiln.runtime.errors import EdgekilnError
from edgekiln.runtime.manifest import Task
from edgekiln.runtime.reports.schema import FidelityReport, FidelityRow
from edgekiln.runtime.verify import min_row_cosine

from .errors import FidelityError
from .passes.base import BuildState, PassConfig

Runner = Callable[[dict[str, np.ndarray]], list[np.ndarray]]
CLASSIFIER_TASKS = (Task.TEXT_CLASSIFICATION, Task.TOKEN_CLASSIFICATION, Task.IMAGE_CLASSIFICATION)


class FidelityConfig(PassConfig):
    """Where and how closely a compiled model must match its reference (the recipe's `[fidelity]`)."""

    shapes: tuple[tuple[int, int], ...] = Field(default=((1, 8), (2, 17), (4, 64)), min_length=1)
    max_abs_diff: float = Field(default=1e-3, gt=0, description="dense outputs")
    min_cosine: float = Field(default=0.9999, gt=0, le=1, description="dense outputs, each row")
    min_agreement: float = Field(default=1.0, gt=0, le=1, description="classifier outputs: top-1 agreement")
    max_relative_error: float = Field(default=1e-3, gt=0, description="classifier outputs: share of the logit range")
    seed: int = 0


def is_classifier(state: BuildState) -> bool:
    return state.source.task in CLASSIFIER_TASKS


def fidelity_feeds(state: BuildState, config: FidelityConfig, longest: int | None = None) -> list[tuple]:
    """(batch, sequence, feeds) for each of the config's shapes; sequences capped at `longest`, and None
    where no input has a sequence axis (an image model: the cases differ by batch only)."""
    rng = np.random.default_rng(config.seed)
    plan = state.source.shape_plan
    if plan is not None and plan.has_ranges:  # declared ranges: their smallest, middle and largest shapes
        from .input_shapes import shape_cases

        return shape_cases(plan, config.shapes, rng)
    has_sequence = state.source.image is None and (plan is None or plan.uses_sequence)
    cases = []
    for batch, sequence in config.shapes:
        sequence = min(sequence, longest) if longest else sequence
        cases.append((batch, sequence if has_sequence else None, state.source.make_feeds(batch, sequence, rng)))
    return cases


def where(batch: int, sequence: int | None) -> str:
    """`batch 2, sequence 17`, or `batch 2` for a model without a sequence axis."""
    return f"batch {batch}" + ("" if sequence is None else f", sequence {sequence}")


def check(
    reference: Runner,
    candidate: Runner,
    cases: list[tuple],
    config: FidelityConfig,
    *,
    classifier: bool,
    names: tuple[str, str],
    details: dict | None = None,
    shape_hint: str | None = None,
    cosine_floor: float | None = None,
) -> FidelityReport:
    """Run both on every case and judge the outputs against `config`'s limits (nothing is raised, but
    a model that cannot run a case's shapes is one error naming them and `shape_hint`, the flags to pass)."""
    rows = [
        _compare_case(reference, candidate, feeds, batch, sequence, config, classifier, names, shape_hint, cosine_floor)
        for batch, sequence, feeds in cases
    ]
    if classifier:
        limits = {"min_agreement": config.min_agreement, "max_relative_error": config.max_relative_error}
    else:
        limits = {"max_abs_diff": config.max_abs_diff, "min_cosine": config.min_cosine}
    report = FidelityReport(
        reference=names[0],
        candidate=names[1],
        output_kind="classifier" if classifier else "dense",
        shapes=tuple(rows),
        max_abs_diff=max(r.max_abs_diff for r in rows),
        min_cosine=min(r.min_cosine for r in rows),
        argmax_agreement=min(r.argmax_agreement for r in rows) if classifier else None,
        max_relative_error=max(r.max_relative_error for r in rows) if classifier else None,
        thresholds=limits,
        passed=False,
        details=details or {},
    )
    return report.model_copy(update={"passed": _within(report, limits)})


def _compare_case(
    reference: Runner,
    candidate: Runner,
    feeds: dict[str, np.ndarray],
    batch: int,
    sequence: int | None,
    config: FidelityConfig,
    classifier: bool,
    names: tuple[str, str],
    shape_hint: str | None,
    cosine_floor: float | None = None,
) -> FidelityRow:
    expected, got = _run(reference, feeds, names[0], shape_hint), _run(candidate, feeds, names[1], shape_hint)
    expected, got = real_tokens(expected, feeds), real_tokens(got, feeds)
    try:
        return compare(
            expected,
            got,
            batch,
            sequence,
            classifier=classifier,
            tolerance=config.max_relative_error,
            cosine_floor=config.max_abs_diff if cosine_floor is None else cosine_floor,
        )
    except FidelityError as exc:
        if shape_hint is None or "shape" not in exc.message:
            raise
        if any(0 in np.shape(out) for out in list(expected) + list(got)):  # no input size explains an empty one
            raise FidelityError(
                f"{names[1]}: {exc.message.split(' at batch')[0]}: an empty output where {names[0]} gives another "
                "shape",
                hint="this backend does not run this graph as written: use --backend onnxruntime",
            ) from None
        # an output shape that differs (OpenVINO's [0, 0, N] where ONNX Runtime gives [1, 1, N]) comes from
        # input sizes the model does not really take: name them and the flag that declares the right ones
        shapes = ", ".join(f"{name} {list(np.shape(value))}" for name, value in feeds.items())
        raise FidelityError(
            f"{names[1]}: {exc.message.split(' at batch')[0]} on inputs {shapes}, probably sizes "
            f"the model does not take",
            hint=f"declare the shapes it takes, e.g. {shape_hint}",
        ) from None


def real_tokens(outputs: list[np.ndarray], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Token-level outputs ([batch, sequence, ...]) at the attention mask's real tokens only. A padding
    position's output is never read (the token task decodes real tokens), and where a local-attention
    window holds no real token (ModernBERT's, 8 tokens past a 1-token row) it is a softmax over masked
    scores only, which PyTorch and the runtimes resolve differently."""
    mask = feeds.get("attention_mask")
    if mask is None or mask.ndim != 2 or mask.all():
        return outputs
    keep = mask.astype(bool)
    # rank 3 and up ([batch, sequence, features]): a [batch, labels] output may have as many labels as tokens
    return [np.asarray(out)[keep] if np.ndim(out) >= 3 and np.shape(out)[:2] == mask.shape else out for out in outputs]


def _run(runner: Runner, feeds: dict[str, np.ndarray], who: str, shape_hint: str | None) -> list[np.ndarray]:
    try:
        return runner(feeds)
    except EdgekilnError:
        raise
    except Exception as exc:  # onnxruntime, OpenVINO, TVM and torch each raise their own types
        if shape_hint is not None:  # a raw-tensor file: name the shapes tried and the flag to declare them
            from .input_shapes import run_failure

            raise run_failure(exc, feeds, who, shape_hint) from None
        sizes = ", ".join(f"{name} {list(np.shape(value))}" for name, value in feeds.items())
        text = re.sub(r"\x1b\[[0-9;]*m|\[ONNXRuntimeError\] : \d+ : \w+ : ", "", str(exc)).strip()
        raise FidelityError(
            f"{who} fails at {sizes}: {(text.splitlines() or [type(exc).__name__])[0][:300]}",
            hint="the graph holds a size fixed at the tracing shape, or an operator the runtime "
            "lacks; report the model",
        ) from None


def require(report: FidelityReport, hint: str) -> FidelityReport:
    """`report`, or a FidelityError naming the measure that failed and the worst shape."""
    if report.passed:
        return report
    limits = report.thresholds
    if report.output_kind == "classifier":
        worst = min(report.shapes, key=lambda row: row.argmax_agreement)
        what = (
            f"top-1 agreement {report.argmax_agreement:.1%} (limit {limits['min_agreement']:.1%}), max error "
            f"{report.max_relative_error:.3g} of the logit range (limit {limits['max_relative_error']:g})"
        )
    else:
        worst = max(report.shapes, key=lambda row: row.max_abs_diff)
        what = (
            f"max abs diff {report.max_abs_diff:.3g} (limit {limits['max_abs_diff']:g}), min cosine "
            f"{report.min_cosine:.6f} (limit {limits['min_cosine']:g})"
        )
    raise FidelityError(
        f"{report.candidate} differs from {report.reference}: {what}; worst at {where(worst.batch, worst.sequence)}",
        hint=hint,
    )


def compare(
    reference: list[np.ndarray],
    candidate: list[np.ndarray],
    batch: int,
    sequence: int | None,
    *,
    classifier: bool,
    tolerance: float,
    cosine_floor: float = 0.0,
) -> FidelityRow:
    """One shape's measures. Rows whose reference RMS is below `cosine_floor` (the absolute limit) have
    no meaningful direction (a detector's near-zero map on random inputs): max abs diff judges them."""
    if len(reference) != len(candidate):
        raise FidelityError(f"the compiled model returns {len(candidate)} outputs, the reference {len(reference)}")
    max_abs, min_cos = 0.0, 1.0
    for ref, out in zip(reference, candidate):
        ref, out = np.asarray(ref, dtype=np.float32), np.asarray(out, dtype=np.float32)
        if ref.shape != out.shape:
            raise FidelityError(
                f"output shape {list(out.shape)} differs from the reference's {list(ref.shape)} "
                f"at {where(batch, sequence)}"
            )
        max_abs = max(max_abs, float(np.abs(ref - out).max(initial=0.0)))
        min_cos = min(min_cos, _min_cosine(ref, out, cosine_floor))
    row = {"batch": batch, "sequence": sequence, "max_abs_diff": max_abs, "min_cosine": min_cos}
    if classifier:
        row.update(
            _classifier_measures(np.asarray(reference[0], np.float32), np.asarray(candidate[0], np.float32), tolerance)
        )
    return FidelityRow(**row)


def _min_cosine(ref: np.ndarray, out: np.ndarray, floor: float) -> float:
    if not floor or ref.ndim == 0 or ref.size == 0:
        return min_row_cosine(ref, out)
    rows = ref.reshape(ref.shape[0], -1)
    kept = np.sqrt(np.mean(np.square(rows, dtype=np.float64), axis=1)) >= floor if rows.size else []
    return min_row_cosine(ref[kept], out[kept]) if np.any(kept) else 1.0


def _classifier_measures(ref: np.ndarray, out: np.ndarray, tolerance: float) -> dict:
    ref, out = ref.reshape(-1, ref.shape[-1]), out.reshape(-1, out.shape[-1])
    spread = np.maximum(ref.max(axis=1) - ref.min(axis=1), 1e-12)
    relative = float((np.abs(ref - out).max(axis=1) / spread).max(initial=0.0))
    chosen = out.argmax(axis=1)
    gap = ref.max(axis=1) - ref[np.arange(len(ref)), chosen]  # how much lower the reference scored that choice
    agreement = float(np.mean(gap <= tolerance * spread)) if len(ref) else 1.0
    return {"argmax_agreement": agreement, "max_relative_error": relative}


def _within(report: FidelityReport, limits: dict[str, float]) -> bool:
    if report.output_kind == "classifier":
        return (
            report.argmax_agreement >= limits["min_agreement"]
            and report.max_relative_error <= limits["max_relative_error"]
        )
    return report.max_abs_diff <= limits["max_abs_diff"] and report.min_cosine >= limits["min_cosine"]


# int8 is held to the accuracy budget on real data; this check only reports how far the kept model
# moved from float on the fidelity shapes (random inputs), so its limits are loose and not enforced.
INT8_REPORT_LIMITS = FidelityConfig(max_abs_diff=1e6, min_cosine=0.99, min_agreement=0.9, max_relative_error=0.25)
# the cosine skips rows smaller than this; not the loose abs limit above, which would skip every row
INT8_COSINE_FLOOR = FidelityConfig().max_abs_diff


def int8_fidelity(state: BuildState, float_model: Runner, int8_model: Runner, name: str) -> FidelityReport:
    return check(
        float_model,
        int8_model,
        fidelity_feeds(state, INT8_REPORT_LIMITS),
        INT8_REPORT_LIMITS,
        classifier=is_classifier(state),
        names=("the float model", name),
        shape_hint=getattr(state.source.shape_plan, "suggestion", lambda: None)(),
        cosine_floor=INT8_COSINE_FLOOR,
    )
