"""Saving a pruned encoder as a Hugging Face folder that reloads. The config records each layer's
heads and FFN width under `edgekiln_pruning`; `load_pretrained` builds the model from the config,
cuts it to those shapes, then loads the weights (plain `from_pretrained` would fail on the shapes,
or with `ignore_mismatched_sizes` silently re-initialise the pruned layers)."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import CompileError
from .structure import Shape, reshape_to, shape_of

CONFIG_KEY = "edgekiln_pruning"


def pruned_shape(folder: Path) -> Shape | None:
    try:
        recorded = json.loads((folder / "config.json").read_text()).get(CONFIG_KEY)
    except (OSError, json.JSONDecodeError):
        return None
    if recorded is None:
        return None
    return Shape(tuple(recorded["heads"]), tuple(recorded["intermediate_sizes"]))


def load_pretrained(auto_class, folder: Path, **kwargs):
    """`auto_class.from_pretrained(folder, **kwargs)`, for pruned folders too; in float32 whatever the
    saved dtype (transformers 5 keeps a float16/bfloat16 checkpoint's, and exports it so)."""
    from ..sources.remote_code import NO_REMOTE_CODE, refuse_remote_code

    refuse_remote_code(folder)
    shape = pruned_shape(folder)
    if shape is None:
        return auto_class.from_pretrained(str(folder), local_files_only=True, **NO_REMOTE_CODE, **kwargs).float()
    import transformers
    from safetensors.torch import load_file

    config = transformers.AutoConfig.from_pretrained(str(folder), local_files_only=True, **NO_REMOTE_CODE)
    head_width = config.num_labels if hasattr(config, "num_labels") else None
    for key in ("num_labels", "id2label", "label2id"):
        if key in kwargs:
            setattr(config, key, kwargs[key])
    model = auto_class.from_config(config)
    reshape_to(model, shape)
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise CompileError(f"{folder} is a pruned model without model.safetensors", hint="re-run the pruning")
    state = load_file(str(weights))
    if kwargs.get("num_labels", head_width) != head_width:  # a new task head: keep the encoder only
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    wrong = [k for k in missing if not k.startswith("classifier.")] + list(unexpected)
    if wrong:
        raise CompileError(f"the pruned weights in {folder} do not fit the recorded shapes ({wrong[:3]} …)")
    return model.float().eval()


def save_pretrained(model, folder: Path) -> None:
    """`model.save_pretrained(folder)`, recording per-layer shapes when the model was pruned."""
    model.save_pretrained(str(folder))
    try:
        shape = shape_of(model)
    except CompileError:  # not an encoder edgekiln prunes
        return
    config = model.config
    if set(shape.heads) == {config.num_attention_heads} and set(shape.widths) == {
        getattr(config, "intermediate_size", None)
    }:
        return
    path = folder / "config.json"
    data = json.loads(path.read_text())
    data[CONFIG_KEY] = {"heads": list(shape.heads), "intermediate_sizes": list(shape.widths), "format": 1}
    path.write_text(json.dumps(data, indent=2))
