"""Which input axes become shape buckets: axis 0 is the batch, one other named axis the sequence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from pydantic import AfterValidator

from edgekiln.runtime.manifest import TensorSpec

from ..errors import CompileError


@dataclass(frozen=True)
class BucketAxes:
    sequence_name: str | None  # the named dynamic axis shared by the inputs, e.g. "sequence"
    sequence_axes: dict[str, int]  # input -> axis
    output_sequence_axes: dict[str, int]

    def shape(self, spec: TensorSpec, batch: int, sequence: int | None) -> list[int]:
        dims = []
        for axis, size in enumerate(spec.shape):
            if isinstance(size, int):
                dims.append(size)
            elif axis == 0:
                dims.append(batch)
            else:
                dims.append(sequence)
        return dims


def bucket_axes(
    inputs: tuple[TensorSpec, ...], outputs: tuple[TensorSpec, ...], who: str = "TVM compiles fixed shapes and"
) -> BucketAxes:
    names = {size for spec in inputs for size in spec.shape[1:] if isinstance(size, str)}
    if len(names) > 1:
        raise CompileError(
            f"{who} buckets only the batch and one sequence axis; the inputs have several dynamic axes {sorted(names)}",
            hint="declare fixed sizes with --input-shape NAME:SHAPE (e.g. images:1x3x640x640), or "
            "export the model with fixed sizes for all but the batch and sequence axes",
        )
    name = names.pop() if names else None
    return BucketAxes(name, _axes_named(inputs, name), _output_axes(outputs, name))


def _axes_named(specs: tuple[TensorSpec, ...], name: str | None) -> dict[str, int]:
    if name is None:
        return {}
    axes = {}
    for spec in specs:
        found = [axis for axis, size in enumerate(spec.shape) if axis > 0 and size == name]
        if found:
            axes[spec.name] = found[0]
    return axes


def _output_axes(outputs: tuple[TensorSpec, ...], name: str | None) -> dict[str, int]:
    """Outputs' sequence axes: named like the inputs' (dynamo export), or else the one dynamic
    non-batch axis (the TorchScript exporter names output axes after the output)."""
    axes = _axes_named(outputs, name)
    if name is None:
        return axes
    for spec in outputs:
        dynamic = [axis for axis, size in enumerate(spec.shape) if axis > 0 and isinstance(size, str)]
        if spec.name not in axes and len(dynamic) == 1:
            axes[spec.name] = dynamic[0]
    return axes


def pad_values(inputs: tuple[TensorSpec, ...], tokenizer) -> dict[str, int]:
    """What pads each input up to a bucket: the tokenizer's pad id for token ids, else 0 (which masks
    a position in attention_mask)."""
    return {
        spec.name: (tokenizer.pad_id if tokenizer and tokenizer.feeds.get(spec.name) == "ids" else 0) for spec in inputs
    }


def check_buckets(buckets: tuple[int, ...] | None) -> tuple[int, ...] | None:
    """`--sequence-buckets` as given: increasing positive lengths (or None: the default)."""
    if buckets is not None and (list(buckets) != sorted(set(buckets)) or buckets[0] < 1 or buckets[-1] > 1 << 20):
        raise CompileError(
            f"bad sequence buckets {list(buckets)}: they must be increasing positive lengths up to {1 << 20}",
            hint="e.g. --sequence-buckets 32,64,128",
        )
    return buckets


SequenceBuckets = Annotated[tuple[int, ...] | None, AfterValidator(check_buckets)]


def check_lengths(requested: tuple[int, ...], max_length: int | None) -> None:
    """Lengths the user gave (`--sequence-buckets`, not a profile's defaults) past the model's limit are
    refused, not dropped (passes call it in check_preconditions: before the cache, whose key ignores it)."""
    if max_length is not None and any(length > max_length for length in requested):
        raise CompileError(
            f"--sequence-buckets {','.join(map(str, requested))}: this model reads at most {max_length} tokens",
            hint=f"give lengths up to {max_length}",
        )


def sequence_buckets(requested: tuple[int, ...], max_length: int | None) -> tuple[int, ...]:
    """The requested lengths the model can take; the model's own limit added when all exceed it."""
    if max_length is None:
        return requested
    kept = tuple(length for length in requested if length <= max_length)
    return kept or (max_length,)
