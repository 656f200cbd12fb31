"""Whether a text model's answer for a text depends on the padding around it.

Batched predictions pad every text to the batch's longest, and a model that masks its padding gives
each text the answer it gives alone. Some do not (Nyströmformer's landmarks average over padded
positions; ConvBERT's convolutions reach into them): for those, an answer would depend on which other
texts shared the call. The check runs the reference model on each padded row of the fidelity feeds
and on the same text alone; the artifact records the result (`TokenizerSpec.pad_sensitive`) and the
runtime then runs such a model one text per call.
"""

from __future__ import annotations

import numpy as np

from .errors import CompileError
from .fidelity import Runner

# Padding changes a masked model's outputs by float rounding only (~1e-6 of their scale).
RELATIVE_LIMIT = 1e-4


def padding_effect(reference: Runner, cases: list[tuple], mask_name: str = "attention_mask") -> dict | None:
    """{"max_abs_diff", "scale", "sensitive"} over the padded rows of `cases` ((batch, sequence, feeds)),
    or None when no case has a padded row."""
    worst, scale, checked = 0.0, 0.0, 0
    for _batch, _sequence, feeds in cases:
        mask = feeds.get(mask_name)
        if mask is None:
            return None
        try:
            batched = reference(feeds)
        except Exception:  # noqa: BLE001 - the fidelity check that follows reports a model failing at a shape
            return None
        for row, length in enumerate(mask.sum(axis=1).astype(int)):
            if length == mask.shape[1] or length == 0:
                continue
            try:
                alone = reference({name: value[row : row + 1, :length] for name, value in feeds.items()})
            except Exception:  # noqa: BLE001 - a model that cannot run so short a text (Funnel): no verdict from it
                continue
            compared = False
            for together, single in zip(batched, alone):
                together = _trimmed(np.asarray(together[row : row + 1]), length)
                single = np.asarray(single)
                if together.shape != single.shape:
                    continue
                worst = max(worst, float(np.abs(together - single).max(initial=0.0)))
                scale = max(scale, float(np.abs(single).max(initial=0.0)))
                compared = True
            checked += compared
    if not checked:
        return None
    return {
        "padded_rows": checked,
        "max_abs_diff": worst,
        "scale": scale,
        "sensitive": worst > RELATIVE_LIMIT * max(scale, 1e-6),
    }


def _trimmed(output: np.ndarray, length: int) -> np.ndarray:
    """A token-level output ([1, sequence, features]) cut to the text's own tokens; a per-text output
    ([1, labels] or [1, dim]) as it is, even where its width equals the padded length."""
    return output[:, :length] if output.ndim >= 3 else output  # noqa: PLR2004


def recorded_padding(reports) -> dict:
    """The padding check verify_fidelity recorded in a build's reports ({} where none ran)."""
    return ((reports.get("verify_fidelity") or {}).get("details") or {}).get("padding") or {}


def refuse_bucket_padding(state, padded_by: str) -> None:
    """A padding-sensitive text model cannot run where every call is padded to a fixed length
    (`padded_by`: TVM's buckets, OpenVINO's static shapes): its answers would be the padded text's."""
    padding = recorded_padding(state.reports)
    if padding.get("sensitive"):
        raise CompileError(
            f"{state.source.description}'s answer for a text changes with the padding around it "
            f"(max diff {padding['max_abs_diff']:.3g}), and {padded_by} pads every call to a fixed length: "
            "its answers would not be the model's",
            hint="compile it for onnxruntime, or for openvino without --sequence-buckets: they run it one text per call, unpadded",
        )
