"""The benchmarks' interleaved measurement: edgekiln.runtime.interleave (also used by --backend auto)."""

from edgekiln.runtime.interleave import measure  # noqa: F401
