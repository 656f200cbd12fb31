"""Resumable training state in `<OUT>.partial/`: written atomically every few steps."""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import CompileError

STATE_FILE = "state.pt"
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


def open_run(work: Path, identity: dict) -> bool:
    """Create the work folder, or check it belongs to this run. True if there is state to resume."""
    run_file = work / RUN_FILE
    if run_file.is_file():
        if json.loads(run_file.read_text()) != identity:
            raise CompileError(f"{work} holds an interrupted run with other settings or data",
                               hint="re-run that command to finish it, or delete the folder to start afresh")
        return (work / STATE_FILE).is_file()
    work.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps(identity, indent=2, sort_keys=True))
    return False


def save_state(work: Path, model, optimizer, scheduler, progress: Progress) -> None:
    import torch

    trainable = {name: tensor for name, tensor in model.state_dict().items()}
    temporary = work / (STATE_FILE + ".tmp")
    torch.save({"model": trainable, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "progress": asdict(progress), "torch_rng": torch.get_rng_state()}, temporary)
    os.replace(temporary, work / STATE_FILE)


def load_state(work: Path, model, optimizer, scheduler) -> Progress:
    import torch

    state = torch.load(work / STATE_FILE, map_location="cpu", weights_only=False)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["torch_rng"])
    return Progress(**state["progress"])
