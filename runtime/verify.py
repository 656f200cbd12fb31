"""`edgekiln verify`: run an artifact on its stored reference inputs and compare with the outputs the
build machine computed. Runs wherever the runtime runs (a device, or an emulated one)."""

from __future__ import annotations

import json
import platform
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .errors import ArtifactError, InputError
from .images.reference import IMAGE_REFERENCE_FILE, check_image_reference
from .manifest import Manifest, Precision
from .npz import read_arrays
from .paths import inside

REFERENCE_FILE = "reference.npz"
FLOAT_MAX_ABS_DIFF = 1e-4  # float artifacts: same math, different kernels
QUANTIZED_MIN_COSINE = 0.99  # int8 and bf16 artifacts: compared by direction, the fp32 reference is not exact


_KEY = re.compile(r"(\d{1,4})/(input|output)/(.+)")


def verify_artifact(
    folder: str | Path, *, threads: int | None = None, trusted_keys: Iterable[str | Path | bytes] | None = None
) -> dict:
    from .session import load

    session = load(folder, threads=threads, trusted_keys=trusted_keys)
    manifest = session.manifest
    if manifest.reference is None:
        raise ArtifactError(
            f"{folder} stores no reference outputs (compiled before edgekiln stored them)",
            hint="recompile the artifact",
        )
    cases = _cases(read_arrays(inside(folder, manifest.reference), manifest.reference), manifest)
    rows = []
    for number, (feeds, expected) in sorted(cases.items()):
        try:
            got = session.run(feeds)
        except InputError as exc:  # the stored inputs are part of the artifact
            raise ArtifactError(
                f"{manifest.reference} case {number}: {exc.message}", hint="recompile the artifact"
            ) from None
        rows.append(_compare(number, expected, got))
    report = {
        "artifact": manifest.artifact_id,
        "machine": platform.machine(),
        "backend": manifest.backend,
        "precision": manifest.precision.value,
        "cases": rows,
        "max_abs_diff": max(r["max_abs_diff"] for r in rows),
        "min_cosine": min(r["min_cosine"] for r in rows),
    }
    if manifest.precision is Precision.FP32:
        report["threshold"] = {"max_abs_diff": FLOAT_MAX_ABS_DIFF}
        report["passed"] = report["max_abs_diff"] <= FLOAT_MAX_ABS_DIFF
    else:
        report["threshold"] = {"min_cosine": QUANTIZED_MIN_COSINE}
        report["passed"] = report["min_cosine"] >= QUANTIZED_MIN_COSINE
    if IMAGE_REFERENCE_FILE in manifest.files and manifest.image is not None and session.encoder is not None:
        report["preprocess"] = _preprocess(folder, session.encoder, manifest)
        report["passed"] = report["passed"] and report["preprocess"].get("passed", True)
    return report


def _preprocess(folder, encoder, manifest: Manifest) -> dict:
    try:
        import PIL  # noqa: F401
    except ImportError:  # the model cases need no Pillow: they still count
        return {"skipped": "Pillow is not installed here (pip install 'edgekiln[vision]')"}
    arrays = read_arrays(inside(folder, IMAGE_REFERENCE_FILE), IMAGE_REFERENCE_FILE)
    return check_image_reference(arrays, encoder, manifest.image)


def _cases(arrays: dict[str, np.ndarray], manifest: Manifest) -> dict[int, tuple[dict, dict]]:
    """Reference cases by number: every case holds every model input and output, nothing else."""
    cases: dict[int, tuple[dict, dict]] = {}
    for key, value in arrays.items():
        match = _KEY.fullmatch(key)
        if match is None:
            raise ArtifactError(
                f"{manifest.reference} holds an array named {key!r}, expected NUMBER/input/NAME or NUMBER/output/NAME",
                hint="recompile the artifact",
            )
        number, kind, name = match.groups()
        feeds, outputs = cases.setdefault(int(number), ({}, {}))
        (feeds if kind == "input" else outputs)[name] = value
    inputs, outputs = sorted(s.name for s in manifest.inputs), sorted(s.name for s in manifest.outputs)
    for number, (feeds, expected) in sorted(cases.items()):
        if sorted(feeds) != inputs or sorted(expected) != outputs:
            raise ArtifactError(
                f"{manifest.reference} case {number} holds inputs {sorted(feeds)} and outputs "
                f"{sorted(expected)}; the model's are {inputs} and {outputs}",
                hint="recompile the artifact",
            )
    if not cases:
        raise ArtifactError(f"{manifest.reference} holds no reference cases", hint="recompile the artifact")
    return cases


def _compare(number: int, expected: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict:
    max_abs, min_cos = 0.0, 1.0
    for name, reference in expected.items():
        value = np.asarray(got[name], dtype=np.float64)
        reference = reference.astype(np.float64)
        if value.shape != reference.shape:
            raise ArtifactError(f"output {name} has shape {list(value.shape)}, the reference {list(reference.shape)}")
        max_abs = max(max_abs, float(np.abs(value - reference).max(initial=0.0)))
        min_cos = min(min_cos, min_row_cosine(reference, value))
    shape = next(iter(expected.values())).shape
    return {"case": number, "output_shape": list(shape), "max_abs_diff": max_abs, "min_cosine": min_cos}


def min_row_cosine(reference: np.ndarray, candidate: np.ndarray) -> float:
    """The lowest cosine similarity between matching rows (axis 0) of two arrays; 1 for two zero rows
    and for empty arrays (a detector that found nothing on random inputs)."""
    if reference.size == 0:
        return 1.0
    a = reference.reshape(reference.shape[0], -1).astype(np.float64) if reference.ndim else reference.reshape(1, 1)
    b = candidate.reshape(a.shape).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    both_zero = norms == 0
    cosine = np.where(both_zero, 1.0, (a * b).sum(axis=1) / np.where(both_zero, 1.0, norms))
    return float(cosine.min(initial=1.0))


def main(argv: list[str]) -> int:
    """`python -m edgekiln.runtime.verify ARTIFACT`: print the report as JSON (used under emulation)."""
    report = verify_artifact(argv[0])
    print(json.dumps(report))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
