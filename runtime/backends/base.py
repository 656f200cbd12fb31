"""What every runtime backend provides."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import numpy as np


class Device(str, Enum):
    AUTO = "auto"  # the artifact's target decides
    CPU = "cpu"
    CUDA = "cuda"


@dataclass(frozen=True)
class BackendOptions:
    threads: int
    device: Device = Device.AUTO
    verified: bool = True  # the artifact's files were hash-checked: a backend may check what it reads again


class BackendSession(Protocol):
    """A loaded model: named numpy arrays in, named numpy arrays out (owned by the caller)."""

    name: str

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...
