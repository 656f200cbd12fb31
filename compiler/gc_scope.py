"""Python's cyclic garbage collector, kept to a pass's own objects while the pass runs.

Tracing a model (torch.export, the ONNX exporter's decompositions) and building TVM kernels allocate
millions of short-lived Python objects; each full collection the allocations trigger also walks every
object the process held before (torch, transformers, TVM, OpenVINO and ONNX Runtime's modules: about
a million), which cost a tenth of a tiny model's export. While a pass runs, those older objects are
frozen (gc.freeze: left out of collections) and afterwards put back into the oldest generation
(gc.unfreeze). Older objects that became garbage meanwhile wait for a full collection, which the
next passes' freezes would keep postponing: so one runs after a pass once the passes since the last
have run `AMORTISED` times as long as that collection took (its cost stays a few percent of the
passes', and garbage waits seconds, not a whole session of builds)."""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator

AMORTISED = 20
_state = {"last_collection": 0.0, "frozen_since": 0.0}  # seconds: the last full collection, passes since


@contextlib.contextmanager
def older_objects_frozen() -> Iterator[None]:
    """Run the block with the objects that exist when it starts left out of garbage collection."""
    if not gc.isenabled() or gc.get_freeze_count():  # the caller manages the collector, or froze already
        yield
        return
    started = time.perf_counter()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        _state["frozen_since"] += time.perf_counter() - started
        if _state["frozen_since"] >= AMORTISED * _state["last_collection"]:
            started = time.perf_counter()
            gc.collect()
            _state["last_collection"], _state["frozen_since"] = time.perf_counter() - started, 0.0
