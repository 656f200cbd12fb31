"""Python's cyclic garbage collector, kept to a pass's own objects while the pass runs.

Tracing a model (torch.export, the ONNX exporter's decompositions) and building TVM kernels allocate
millions of short-lived Python objects; each full collection the allocations trigger also walks every
object the process held before (torch, transformers, TVM, OpenVINO and ONNX Runtime's modules: about
a million), which cost a tenth of a tiny model's export. While a pass runs, those older objects are
frozen (gc.freeze: left out of collections, never freed meanwhile) and afterwards put back into the
oldest generation (gc.unfreeze), where the next full collection frees any that became garbage.
Nothing is freed later than one pass, and nothing the pass itself makes is collected any differently."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def older_objects_frozen() -> Iterator[None]:
    """Run the block with the objects that exist when it starts left out of garbage collection."""
    if not gc.isenabled() or gc.get_freeze_count():  # the caller manages the collector, or froze already
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
