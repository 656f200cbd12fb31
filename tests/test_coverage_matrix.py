"""The coverage matrix: every encoder family x task x backend, compiled from a tiny random-weight
folder and matched against PyTorch at two sequence lengths and two batch sizes (none of them the
tracing shape, so the dynamic axes must really be dynamic; TVM within its one bucket of 16).

A cell the backend cannot build must be refused with one clear error line (tests/coverage/expected.py
lists those). With EDGEKILN_COVERAGE_JSON=path each cell's outcome is merged into that JSON, which
benchmarks/coverage_table.py renders into the README's supported-architectures table."""

from __future__ import annotations

import fcntl
import functools
import json
import os
from pathlib import Path

import numpy as np
import pytest

from edgekiln.compiler import CompileError, Recipe, compile
from edgekiln.runtime import load

from .coverage.expected import KNOWN_BUGS, UNSUPPORTED, lookup
from .coverage.families import FAMILIES, KINDS, make_family_folder, matrix_layers

BACKENDS = ("onnxruntime", "openvino", "tvm")
TASKS = {"sequence": "sequence classification", "token": "token classification", "encoder": "sentence embedding"}
SHAPES = ((1, 7), (3, 12))  # (batch, sequence): the export traces (2, 16); TVM's one bucket is 16
TOLERANCE = {"onnxruntime": (1e-4, 1e-3), "openvino": (1e-4, 1e-3), "tvm": (2e-4, 2e-3)}  # (atol, rtol)
RESULTS_ENV = "EDGEKILN_COVERAGE_JSON"


def _marks(family: str, kind: str, backend: str) -> list:
    marks = [pytest.mark.xdist_group(f"matrix-{family}-{kind}")]  # one folder's cells, one worker: one export
    reason = lookup(KNOWN_BUGS, family, kind, backend)
    if reason:
        marks.append(pytest.mark.xfail(strict=True, reason=reason))
    return marks


CELLS = [
    pytest.param(family, kind, backend, id=f"{family}-{kind}-{backend}", marks=_marks(family, kind, backend))
    for family in FAMILIES
    for kind in KINDS
    for backend in BACKENDS
]


@pytest.fixture(scope="session")
def coverage_results():
    """Cell outcomes, merged into $EDGEKILN_COVERAGE_JSON at the end of the session."""
    results: dict[str, dict] = {}
    yield results
    target = os.environ.get(RESULTS_ENV)
    if target and results:
        path = Path(target)
        with open(path.with_suffix(".lock"), "w") as lock:  # pytest-xdist's workers merge one at a time
            fcntl.flock(lock, fcntl.LOCK_EX)
            merged = json.loads(path.read_text()) if path.is_file() else {}
            merged.update(results)
            path.write_text(json.dumps(dict(sorted(merged.items())), indent=1) + "\n")


@pytest.fixture(scope="session")
def family_folder(tmp_path_factory):
    """One folder per (family, kind), built on first use; the same folder for every backend, so the
    pass cache shares its export between them."""
    root, made = tmp_path_factory.mktemp("families"), {}

    def get(family: str, kind: str) -> Path:
        if (family, kind) not in made:
            made[family, kind] = make_family_folder(root / family / kind, family, kind, layers=matrix_layers(family))
        return made[family, kind]

    return get


def _feeds(names, batch: int, sequence: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 100, size=(batch, sequence), dtype=np.int64)
    mask = np.ones((batch, sequence), np.int64)
    if batch > 1:  # the last row is padded, so masking is checked too
        mask[-1, sequence // 2 :] = 0
        ids[-1, sequence // 2 :] = 0
    arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    return {name: arrays[name] for name in names}


@functools.cache
def _pytorch_model(folder: Path, kind: str):
    """The folder's model as transformers loads it, once per folder (every backend's cell reads it)."""
    import transformers

    auto = {
        "sequence": transformers.AutoModelForSequenceClassification,
        "token": transformers.AutoModelForTokenClassification,
        "encoder": transformers.AutoModel,
    }[kind]
    return auto.from_pretrained(str(folder)).eval()


_REFERENCES: dict[tuple, np.ndarray] = {}


def _reference(folder: Path, kind: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """PyTorch's output for `feeds`, run once per folder and feeds (the backends' cells share the feeds)."""
    key = (folder, kind, tuple((name, array.shape, array.tobytes()) for name, array in sorted(feeds.items())))
    if key not in _REFERENCES:
        _REFERENCES[key] = _run_reference(folder, kind, feeds)
    return _REFERENCES[key]


def _run_reference(folder: Path, kind: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    import torch

    model = _pytorch_model(folder, kind)
    with torch.no_grad():
        out = model(**{name: torch.from_numpy(array) for name, array in feeds.items()})
    if kind != "encoder":
        return out.logits.numpy()
    hidden, mask = out.last_hidden_state.numpy(), feeds["attention_mask"][..., None].astype(np.float32)
    return (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)  # the folder declares mean pooling


def _check_cell(family: str, kind: str, backend: str, folder: Path, out: Path) -> dict:
    recipe = Recipe.from_flags(backend=backend, sequence_buckets=(16,) if backend == "tvm" else None)
    refusal = lookup(UNSUPPORTED, family, kind, backend)
    if refusal:
        with pytest.raises(CompileError, match=refusal) as error:
            compile(folder, "x86-64-avx2", out, recipe)
        return {"status": "unsupported", "reason": str(error.value).splitlines()[0]}
    result = compile(folder, "x86-64-avx2", out, recipe)
    session = load(result.path)
    names = [spec.name for spec in result.manifest.inputs]
    atol, rtol = TOLERANCE[backend]
    for seed, (batch, sequence) in enumerate(SHAPES):
        feeds = _feeds(names, batch, sequence, seed)
        got = next(iter(session.run(feeds).values()))
        np.testing.assert_allclose(
            got,
            _reference(folder, kind, feeds),
            atol=atol,
            rtol=rtol,
            err_msg=f"{family} {kind} on {backend} at batch {batch}, sequence {sequence}",
        )
    return {"status": "pass", "reason": ""}


@pytest.mark.parametrize("family,kind,backend", CELLS)
def test_cell(family, kind, backend, family_folder, coverage_results, tmp_path):
    pytest.importorskip(backend, reason=f"the {backend} extra is not installed")
    key = f"{family}|{TASKS[kind]}|{backend}"
    bug = lookup(KNOWN_BUGS, family, kind, backend)
    try:
        coverage_results[key] = _check_cell(family, kind, backend, family_folder(family, kind), tmp_path / "art")
    except BaseException as exc:
        line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        coverage_results[key] = {"status": "known-bug" if bug else "fail", "reason": bug or line}
        raise
