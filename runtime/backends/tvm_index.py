"""The TVM part of an artifact: `tvm.json` lists the compiled shape buckets, each a shared library
that takes the model inputs followed by its weights, stored once for all buckets in `tvm_params.npz`."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ..paths import RelativePath

INDEX_FILE = "tvm.json"
PARAMS_FILE = "tvm_params.npz"
INDEX_FORMAT = 1


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CudaKernels(_Frozen):
    """One CUDA module's machine code, compiled at build time: TVM stores the kernels' source in the
    library and asks for machine code at load; the runtime answers from this file (no compiler on the
    device)."""

    source_sha256: str = Field(pattern="^[0-9a-f]{64}$")  # of the CUDA source TVM stored in the library
    file: RelativePath  # a fatbin in the artifact folder


class Bucket(_Frozen):
    batch: int = Field(gt=0, le=1 << 16)  # bounded: a warm-up allocates a bucket's inputs
    sequence: int | None = Field(default=None, gt=0, le=1 << 20)  # None: the model has no sequence axis
    library: RelativePath  # file name in the artifact folder (never an absolute path or `..`)
    params: tuple[str, ...]  # keys in PARAMS_FILE, in the order the library's `main` takes them
    kernels: tuple[CudaKernels, ...] = ()  # CUDA builds: the library's device code


class TvmIndex(_Frozen):
    format: int = INDEX_FORMAT
    arch: str  # CPU architecture the libraries were compiled for (platform.machine() spelling)
    isa: tuple[str, ...] = ()  # the target's instruction-set features, which the libraries' code may use
    device: str = Field(pattern="^(cpu|cuda)$")
    target: dict  # the TVM target, for people and for `inspect`
    inputs: tuple[str, ...]  # model inputs, in the order `main` takes them
    sequence_axes: dict[str, int] = {}  # input name -> its sequence axis (padded to the bucket)
    pad_values: dict[str, int] = {}  # value that pads each input (0 masks a position in attention_mask)
    output_sequence_axes: dict[str, int] = {}  # output name -> axis cut back to the request's length
    buckets: tuple[Bucket, ...] = Field(min_length=1)
