"""The artifact manifest: the versioned contract between compiler and runtime.

The compiler builds a `Manifest` and writes it as `manifest.json`; the runtime reads it back with
the same schema. Unknown keys are rejected, so a typo or a newer field never passes silently.
"""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from .hashing import sha256_json
from .images.spec import ImagePreprocessSpec
from .paths import RelativePath

SCHEMA_VERSION = 3  # 3: inputs may carry `value_range`, tokenizers `pad_sensitive`
OLDEST_SCHEMA_VERSION = 2  # still read: what 3 added is optional
MANIFEST_FILE = "manifest.json"
REPORTS_DIR = "reports"
ARTIFACT_ID_PATTERN = "^[0-9a-f]{16}$"
SHA256_PATTERN = "^[0-9a-f]{64}$"
# Not part of the identity: they differ between two builds of the same recipe (or are the identity).
_NOT_IDENTITY = ("artifact_id", "created_at", "signature")
_PASS_NOT_IDENTITY = ("seconds", "cached")


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
    # An index input (it feeds only Gathers of fixed tables): the values they accept, both ends included.
    # The runtime refuses others on every backend (OpenVINO would answer an index past a table with zeros).
    value_range: tuple[int, int] | None = None


class TokenizerSpec(_Frozen):
    file: RelativePath = "tokenizer.json"
    max_length: int = Field(gt=0)
    pad_id: int = Field(ge=0)
    pad_token: str
    # Which tokenizer outputs feed which model inputs, e.g. {"input_ids": "ids"}.
    feeds: dict[str, str]
    # Token ids and token type ids must lie below these (the runtime checks, as TVM's gather does not):
    # the tokenizer's vocabulary, or the model's embedding rows where they are fewer; the type vocabulary.
    vocab_size: int | None = Field(default=None, gt=0)
    type_vocab_size: int | None = Field(default=None, gt=0)
    # The model's answer for a text changes with the padding around it (it does not mask it out): texts
    # run one per call, so no answer depends on its batch (schema 3).
    pad_sensitive: bool = False


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
    artifact_id: str = Field(pattern=ARTIFACT_ID_PATTERN)  # also a cache folder name: hex only
    created_at: str
    edgekiln_version: str
    source: str  # what the user compiled, for people (a folder name, a class name, a file name)
    backend: BackendName
    target: TargetInfo
    precision: Precision
    task: Task
    model_file: RelativePath
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    labels: tuple[str, ...] | None = None
    tokenizer: TokenizerSpec | None = None
    image: ImagePreprocessSpec | None = None  # how an image becomes the input tensor (image tasks)
    quantization: QuantizationInfo | None = None
    reference: RelativePath | None = None  # inputs and the build machine's outputs, for `edgekiln verify`
    passes: tuple[PassRecord, ...]
    tool_versions: dict[str, str]
    files: dict[RelativePath, Annotated[str, Field(pattern=SHA256_PATTERN)]]  # path -> sha256 of all it reads

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def artifact_identity(manifest_fields: dict[str, Any]) -> str:
    """The artifact id: a hash of every manifest field (JSON form) except the id itself, the build
    time, a signature, and each pass's seconds and cache hit, so one edited field changes it and
    two builds of the same recipe share it."""
    fields = {key: value for key, value in manifest_fields.items() if key not in _NOT_IDENTITY}
    fields["passes"] = [
        {key: value for key, value in record.items() if key not in _PASS_NOT_IDENTITY}
        for record in fields.get("passes") or ()
    ]
    return sha256_json(fields)[:16]
