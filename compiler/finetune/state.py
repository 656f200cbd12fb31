"""Resumable training state in `<OUT>.partial/`: written atomically every few steps, as JSON (the
structure) plus safetensors (the tensors it names), so resuming never unpickles anything."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CompileError

STATE_FILE = "state.json"  # written last: it names the tensor file, so the two always agree
TENSORS_PREFIX = "state-"
RUN_FILE = "run.json"
BEST_DIR = "best"


@dataclass
class Progress:
    epoch: int = 0  # epochs fully done
    step_in_epoch: int = 0  # batches done in the current epoch
    global_step: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    history: list[dict] = field(default_factory=list)
    running_loss: float = 0.0  # sum of losses this epoch
    seconds: float = 0.0


def partial_dir(out_dir: Path) -> Path:
    return out_dir.parent / f"{out_dir.name}.partial"


def open_run(work: Path, identity: dict, *, force: bool = False, log=None) -> bool:
    """Create the work folder, or check it belongs to this run. True if there is state to resume.

    A folder with no saved state (interrupted before the first save) is simply started afresh; one
    holding another run's state is refused, naming what differs, unless `force` discards it."""
    run_file = work / RUN_FILE
    if run_file.is_file() and (work / STATE_FILE).is_file():
        try:
            stored = json.loads(run_file.read_text())
        except (OSError, ValueError):
            stored = {}
        if stored == identity:
            return True
        differs = _differences(stored, identity)
        if not force:
            raise CompileError(
                f"{work} holds an interrupted run with other {', '.join(differs)}",
                hint="finish it with the command that started it, or pass --force to discard it and start afresh",
            )
        if log is not None:
            log(f"discarding the interrupted run in {work} (other {', '.join(differs)})")
    if work.exists():
        if not run_file.is_file() and any(work.iterdir()):
            raise CompileError(
                f"{work} is in the way: it holds files but no edgekiln run",
                hint="move it aside (a fine-tune keeps its state in OUT.partial/)",
            )
        shutil.rmtree(work)
    work.mkdir(parents=True)
    run_file.write_text(json.dumps(identity, indent=2, sort_keys=True))
    return False


def _differences(stored: dict, identity: dict) -> list[str]:
    """What differs between two runs, in words: settings by name, the model, the data."""
    names = {"model": "model", "train": "training data", "eval": "eval data"}
    differs = [names[key] for key in names if stored.get(key) != identity.get(key)]
    old, new = stored.get("config") or {}, identity.get("config") or {}
    settings = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
    if settings:
        differs.insert(0, f"settings ({', '.join(settings)})")
    return differs or ["settings"]


def save_state(work: Path, model, optimizer, scheduler, progress: Progress) -> None:
    import torch
    from safetensors.torch import save_file

    tensors: dict[str, Any] = {}
    structure = _encode(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
        },
        tensors,
        set(),
    )
    tensor_file = f"{TENSORS_PREFIX}{uuid.uuid4().hex[:12]}.safetensors"
    save_file(tensors, str(work / tensor_file))
    temporary = work / (STATE_FILE + ".tmp")
    temporary.write_text(json.dumps({"tensors": tensor_file, "state": structure, "progress": asdict(progress)}))
    os.replace(temporary, work / STATE_FILE)
    for old in work.glob(f"{TENSORS_PREFIX}*.safetensors"):
        if old.name != tensor_file:
            old.unlink(missing_ok=True)


def saved_position(work: Path) -> str | None:
    """Where a resume of the run in `work` starts ("epoch 2, step 400"), or None without saved state."""
    try:
        progress = json.loads((work / STATE_FILE).read_text())["progress"]
        return f"epoch {int(progress['epoch']) + 1}, step {int(progress['step_in_epoch'])}"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def load_state(work: Path, model, optimizer, scheduler) -> Progress:
    import torch
    from safetensors.torch import load_file

    try:
        saved = json.loads((work / STATE_FILE).read_text())
        tensor_file = work / Path(saved["tensors"]).name
        state = _decode(saved["state"], load_file(str(tensor_file), device="cpu"))
        progress = Progress(**saved["progress"])
    except (OSError, ValueError, KeyError, TypeError) as exc:  # safetensors raises its own ValueError-like errors
        raise CompileError(
            f"cannot resume from the interrupted run in {work} ({type(exc).__name__}: {exc})",
            hint="delete the folder to start afresh",
        ) from None
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return progress


def _encode(value: Any, tensors: dict, storages: set) -> Any:
    """JSON for a state dict: tensors become {"tensor": name} (stored in `tensors`), tuples and
    dicts with non-string keys (the optimizer's parameter ids) are marked so they come back as they were."""
    import torch

    if isinstance(value, torch.Tensor):
        tensor = value.detach().cpu().contiguous()
        storage = tensor.untyped_storage().data_ptr()
        if storage in storages:  # safetensors refuses tensors sharing memory (tied weights)
            tensor = tensor.clone()
        storages.add(tensor.untyped_storage().data_ptr())
        name = f"t{len(tensors)}"
        tensors[name] = tensor
        return {"tensor": name}
    if isinstance(value, dict):
        return {"items": [[_encode(k, tensors, storages), _encode(v, tensors, storages)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"tuple" if isinstance(value, tuple) else "list": [_encode(v, tensors, storages) for v in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    raise TypeError(f"internal: training state holds a {type(value).__name__}, which edgekiln cannot store")


def _decode(value: dict, tensors: dict) -> Any:
    ((kind, content),) = value.items()
    if kind == "tensor":
        return tensors[content]
    if kind == "items":
        return {_decode(k, tensors): _decode(v, tensors) for k, v in content}
    if kind in ("list", "tuple"):
        items = [_decode(v, tensors) for v in content]
        return tuple(items) if kind == "tuple" else items
    if kind == "value":
        return content
    raise ValueError(f"unknown entry {kind!r} in the saved training state")
