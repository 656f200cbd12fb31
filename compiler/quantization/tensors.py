"""Quantization data for raw-tensor models: calibration batches from `.npz` files of named input
arrays (one file, or a folder of them), and the accuracy budget as agreement with the float model's
outputs on eval tensors (top-1 agreement for classifier-shaped outputs, else mean cosine)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgekiln.runtime.hashing import sha256_json
from edgekiln.runtime.manifest import TensorSpec
from edgekiln.runtime.synthetic import range_of

from ..data import DataError
from .calibration import BATCH, MIN_SAMPLES, CalibrationSet
from .evaluation import Score, model_runner


def is_tensor_data(spec: str) -> bool:
    """An .npz, or a folder holding .npz files."""
    path = Path(spec)
    return path.suffix.lower() == ".npz" or (path.is_dir() and any(path.glob("*.npz")))


@dataclass(frozen=True)
class TensorSet:
    """Named input arrays, the first axis counting samples."""

    arrays: dict[str, np.ndarray]
    source: str

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def fingerprint(self) -> str:
        return sha256_json(
            {
                "source": self.source,
                "arrays": {name: [str(a.dtype), list(a.shape), _digest(a)] for name, a in self.arrays.items()},
            }
        )

    def batches(self, inputs: tuple[TensorSpec, ...], limit: int | None = None) -> list[dict[str, np.ndarray]]:
        """Feeds of the batch size the model takes (its fixed batch, else up to BATCH samples)."""
        first = inputs[0].shape[0] if inputs and inputs[0].shape else None
        fixed = isinstance(first, int) and first > 0
        size = first if fixed else BATCH
        count = min(len(self), limit) if limit else len(self)
        stop = count - count % size if fixed else count  # a fixed batch takes whole batches only
        return [
            {name: array[start : start + size] for name, array in self.arrays.items()} for start in range(0, stop, size)
        ]


def _digest(array: np.ndarray) -> str:
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


def read_tensors(spec: str, inputs: tuple[TensorSpec, ...], role: str) -> TensorSet:
    path = Path(spec)
    files = sorted(path.glob("*.npz")) if path.is_dir() else [path]
    if not files or not files[0].is_file():
        raise DataError(f"{role} data {spec} is not an .npz file or a folder of them")
    parts: dict[str, list[np.ndarray]] = {spec.name: [] for spec in inputs}
    for file in files:
        try:
            with np.load(file, allow_pickle=False) as data:
                missing = sorted(set(parts) - set(data.files))
                if missing:
                    raise DataError(
                        f"{role} file {file.name} lacks input(s) {missing} (it has {sorted(data.files)})",
                        hint="save one array per model input, named after it, first axis = samples",
                    )
                for tensor in inputs:
                    parts[tensor.name].append(_checked(data[tensor.name], tensor, file))
        except (OSError, ValueError) as exc:
            raise DataError(f"{role} file {file} is not a readable .npz ({exc})") from None
    arrays = {name: np.concatenate(chunks) for name, chunks in parts.items()}
    counts = {len(array) for array in arrays.values()}
    if len(counts) != 1:
        raise DataError(f"{role} data {spec} holds different sample counts per input {sorted(counts)}")
    return TensorSet(arrays, str(path))


def _checked(array: np.ndarray, tensor: TensorSpec, file: Path) -> np.ndarray:
    if array.ndim != len(tensor.shape):
        raise DataError(
            f"{file.name}: {tensor.name} has {array.ndim} dimensions; the model's input has "
            f"{len(tensor.shape)} {list(tensor.shape)}",
            hint="the first axis counts samples",
        )
    for axis in range(1, array.ndim):  # the first axis counts samples
        size, got = tensor.shape[axis], array.shape[axis]
        bounds = range_of(size) if isinstance(size, str) else None
        if (isinstance(size, int) and got != size) or (bounds and not bounds[0] <= got <= bounds[1]):
            raise DataError(
                f"{file.name}: {tensor.name} has size {got} on axis {axis}; the model's input takes {size} there "
                f"(shape {list(tensor.shape)})",
                hint="the first axis counts samples; the others are the input's own",
            )
    if array.dtype.kind == "f" and array.size and not np.isfinite(array).all():
        bad = int(np.size(array) - np.isfinite(array).sum())
        raise DataError(
            f"{file.name}: {tensor.name} holds {bad} NaN or infinite values",
            hint="calibration and eval tensors must be finite: clean or drop those samples",
        )
    return array.astype(tensor.dtype, copy=False)


def tensor_calibration(data: TensorSet, inputs: tuple[TensorSpec, ...], samples: int) -> CalibrationSet:
    if len(data) < MIN_SAMPLES:
        raise DataError(
            f"calibration data {data.source} has {len(data)} samples; at least {MIN_SAMPLES} are needed "
            "for meaningful activation ranges"
        )
    feeds = data.batches(inputs, samples)
    return CalibrationSet(
        tuple(feeds), sum(len(next(iter(f.values()))) for f in feeds), data.source, data.fingerprint()
    )


class TensorEvaluator:
    """Scores a model by how closely its first output follows the float model's on the eval tensors."""

    def __init__(self, float_model: Path, data: TensorSet, inputs: tuple[TensorSpec, ...], threads: int) -> None:
        self.feeds = data.batches(inputs)
        self.threads = threads
        run = model_runner(float_model, threads)
        self.reference = [np.asarray(run(feeds), np.float32) for feeds in self.feeds]
        self.classifier = self.reference[0].ndim == 2 and self.reference[0].shape[1] > 1
        self.metric = "top1_agreement" if self.classifier else "mean_cosine"

    def score(self, path: Path) -> Score:
        return self.score_runner(path.name, model_runner(path, self.threads))

    def score_runner(self, name: str, first_output) -> Score:
        outputs = [np.asarray(first_output(feeds), np.float32) for feeds in self.feeds]
        if self.classifier:
            ref, out = np.concatenate(self.reference), np.concatenate(outputs)
            value = float(np.mean(ref.argmax(1) == out.argmax(1)))
            return Score(self.metric, value, out.argmax(1).tolist())
        cosines = [_cosine(ref.ravel(), out.ravel()) for ref, out in zip(self.reference, outputs, strict=True)]
        return Score(self.metric, float(np.mean(cosines)), [round(c, 4) for c in cosines])

    @staticmethod
    def agreement(first: Score, second: Score) -> float:
        pairs = list(zip(first.predictions, second.predictions, strict=True))
        return sum(a == b for a, b in pairs) / max(len(pairs), 1)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    denominator = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / denominator if denominator else float(np.allclose(a, b))


def make_evaluator(state, threads: int):
    """The budget's scorer: the task metric on labelled data, or output agreement on eval tensors."""
    if isinstance(state.evaluation, TensorSet):
        return TensorEvaluator(state.model_path, state.evaluation, state.source.shape_plan.inputs, threads)
    from .evaluation import Evaluator

    return Evaluator(state.source, state.evaluation, threads)
