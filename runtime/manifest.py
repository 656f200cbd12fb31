"""The artifact manifest: the versioned contract between compiler and runtime.

The compiler builds a `Manifest` and writes it as `manifest.json`; the runtime reads it back with
the same schema. Unknown keys are rejected, so a typo or a newer field never passes silently.
"""
from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from .images.spec import ImagePreprocessSpec

SCHEMA_VERSION = 1
MANIFEST_FILE = "manifest.json"
REPORTS_DIR = "reports"


class Task(str, Enum):
    TEXT_CLASSIFICATION = "text-classification"
    TOKEN_CLASSIFICATION = "token-classification"
    SENTENCE_EMBEDDING = "sentence-embedding"
    IMAGE_CLASSIFICATION = "image-classification"
    RAW = "raw"  # tensors in, tensors out: no tokenizer, no post-processing


# Backends are found by name in a registry (runtime/backends), so plugins can add their own.
BACKEND_NAME_PATTERN = r"^[a-z][a-z0-9_\-]{0,31}$"
BackendName = Annotated[str, Field(pattern=BACKEND_NAME_PATTERN)]


class Precision(str, Enum):
    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"
    INT8 = "int8"


class Accelerator(str, Enum):
    NONE = "none"
    CUDA = "cuda"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)


class TensorSpec(_Frozen):
    name: str
    dtype: str  # numpy dtype name, e.g. "int64", "float32"
    shape: tuple[int | str, ...]  # a string is a named dynamic axis ("batch", "sequence")


class TokenizerSpec(_Frozen):
    file: str = "tokenizer.json"
    max_length: int = Field(gt=0)
    pad_id: int = Field(ge=0)
    pad_token: str
    # Which tokenizer outputs feed which model inputs, e.g. {"input_ids": "ids"}.
    feeds: dict[str, str]


class TargetInfo(_Frozen):
    name: str
    arch: str
    threads: int = Field(gt=0)
    accelerator: Accelerator = Accelerator.NONE


class PassRecord(_Frozen):
    name: str
    config: dict[str, Any]
    input_sha256: str
    output_sha256: str
    seconds: float
    cached: bool


class QuantizationInfo(_Frozen):
    """The mixed-precision plan: which int8 scheme, and which nodes stayed in float."""

    mode: str
    kept_float: tuple[str, ...] = ()
    accuracy_drop_points: float | None = None


class Manifest(_Frozen):
    schema_version: int
    artifact_id: str
    created_at: str
    edgekiln_version: str
    source: str  # what the user compiled, for people (a folder name, a class name, a file name)
    backend: BackendName
    target: TargetInfo
    precision: Precision
    task: Task
    model_file: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    labels: tuple[str, ...] | None = None
    tokenizer: TokenizerSpec | None = None
    image: ImagePreprocessSpec | None = None  # how an image becomes the input tensor (image tasks)
    quantization: QuantizationInfo | None = None
    reference: str | None = None  # inputs and the build machine's outputs, for `edgekiln verify`
    passes: tuple[PassRecord, ...]
    tool_versions: dict[str, str]
    files: dict[str, str]  # relative path -> sha256, every file the runtime reads

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def identity_fields(manifest_fields: dict[str, Any]) -> dict[str, Any]:
    """The part of a manifest that defines what the artifact computes (its id is a hash of it)."""
    keys = ("backend", "target", "precision", "task", "inputs", "outputs", "labels", "tokenizer", "quantization",
            "files", "image")
    return {key: manifest_fields[key] for key in keys if key != "image" or manifest_fields.get(key) is not None}
