"""The pruned image classifier in the pass cache, without pickle: its weights (safetensors), the cut
as data (the Torch-Pruning groups removed, in order, or a ViT's kept heads and neurons) and the
report. A fresh copy of the source model is cut again the same way and loaded with the weights; the
strict load checks that the shapes agree. A miss is read back the same way, so every build runs the
replay that a later cache hit relies on."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from edgekiln.runtime.hashing import sha256_json

from ..errors import CompileError
from ..sources.base import ModelSource
from .cnn_data import ImageData
from .config import PruneConfig, RecoveryConfig

VERSION = 1
WEIGHTS, CUT, REPORT = "weights.safetensors", "cut.json", "pruning.json"


def cache_key(source: ModelSource, config: PruneConfig, recovery: RecoveryConfig | None, images: ImageData) -> str:
    return sha256_json(
        {
            "stage": "prune-image",
            "version": VERSION,
            "model": source.content_hash,
            "config": config.model_dump(mode="json"),
            "recovery": recovery.model_dump(mode="json") if recovery else None,
            "data": [d.fingerprint() if d else None for d in (images.train, images.dev, images.calibration)],
        }
    )


def store_result(work: Path, model, kind: str, replay, report: dict) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}, str(work / WEIGHTS))
    (work / CUT).write_text(json.dumps({"kind": kind, "replay": replay}))
    (work / REPORT).write_text(json.dumps(report, indent=2))


def load_result(folder: Path, source: ModelSource):
    """(the pruned module, rebuilt from a fresh copy of the source model; the report)."""
    from safetensors.torch import load_file

    module = copy.deepcopy(source.torch.build())
    cut = json.loads((folder / CUT).read_text())
    if cut["kind"] == "conv-channels":
        from .cnn_search import replay_cut

        replay_cut(module, source.torch.example(), cut["replay"])
    else:
        from .apply import apply_plan
        from .plan import KeepPlan
        from .timm_vit import TimmViT, is_timm_vit

        plan = KeepPlan(*(tuple(tuple(kept) for kept in cut["replay"][part]) for part in ("heads", "neurons")))
        apply_plan(TimmViT(module) if is_timm_vit(module) else module.model, plan, check=False)
    try:
        module.load_state_dict(load_file(str(folder / WEIGHTS)))
    except RuntimeError as exc:
        raise CompileError(
            f"the pruned weights in {folder} do not fit the model cut again ({str(exc).splitlines()[0][:160]})",
            hint="clear the cache entry (or build with --no-cache) and report it",
        ) from None
    return module.eval(), json.loads((folder / REPORT).read_text())
