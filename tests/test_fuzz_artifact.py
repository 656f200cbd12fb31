"""Random mutations of a valid artifact's manifest.json and tvm.json (Hypothesis): loading never
raises anything but edgekiln's own errors, never hangs, never succeeds with a changed manifest,
and never loads a TVM library from outside the artifact folder.

Two kinds of mutation: plain edits (the artifact_id check must refuse any change to an identity
field), and edits "resealed" as a forger would (every listed file re-hashed, the id recomputed),
which reach the deeper checks: those may load, but only with edgekiln errors on the way."""

from __future__ import annotations

import copy
import json
import shutil
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgekiln.runtime import ArtifactError, EdgekilnError, InputError, load
from edgekiln.runtime.manifest import artifact_identity

from .artifact_tools import reseal_manifest

HOSTILE = [
    "../evil.so",
    "/etc/passwd",
    "..",
    "",
    "a/../../b",
    "C:\\x",
    "tvm.json",
    "model.onnx",
    "reference.npz",
    "tokenizer.json",
    "tvm_params.npz",
    "0" * 64,
    "f" * 16,
    "\x00",
    "sequence",
    "batch",
    "ids",
]
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(HOSTILE)
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6) | st.sampled_from(HOSTILE), inner, max_size=3)
    ),
    max_leaves=6,
)
FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
NOT_IDENTITY, PASS_NOT_IDENTITY = ("artifact_id", "created_at", "signature"), ("seconds", "cached")


def _locations(doc, prefix=()) -> list[tuple]:
    found = [prefix]
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    for key, value in items:
        found += _locations(value, (*prefix, key))
    return found


@st.composite
def mutations(draw, original):
    """`original` changed in 1-3 places: a value replaced, a key or item deleted, or one inserted."""
    doc = copy.deepcopy(original)
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(_locations(doc)))
        action = draw(st.sampled_from(["replace", "delete", "insert"]))
        if not where:
            if isinstance(doc, dict) and action == "insert":
                doc[draw(st.text(max_size=6))] = draw(VALUES)
            continue
        parent = doc
        for key in where[:-1]:
            parent = parent[key]
        if action == "replace":
            parent[where[-1]] = draw(VALUES)
        elif action == "delete":
            del parent[where[-1]]
        elif isinstance(parent[where[-1]], dict):
            parent[where[-1]][draw(st.text(max_size=6) | st.sampled_from(HOSTILE))] = draw(VALUES)
        elif isinstance(parent[where[-1]], list):
            parent[where[-1]].append(draw(VALUES))
    return doc


def essence(doc):
    """What the artifact_id covers (a changed essence must never load)."""
    if not isinstance(doc, dict):
        return doc
    kept = {key: value for key, value in doc.items() if key not in NOT_IDENTITY}
    if isinstance(kept.get("passes"), list):
        kept["passes"] = [
            {k: v for k, v in record.items() if k not in PASS_NOT_IDENTITY} if isinstance(record, dict) else record
            for record in kept["passes"]
        ]
    return kept


def reseal(folder, manifest) -> None:
    try:
        reseal_manifest(folder, manifest)
    except (TypeError, AttributeError, ValueError):  # too broken to have an id: leave it as it is
        pass


def _write(path, doc) -> None:
    path.write_text(json.dumps(doc))


@pytest.fixture(scope="module")
def ort_copy(artifacts, tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "ort"
    shutil.copytree(artifacts["sequence"], path)
    return path


@pytest.fixture(scope="module")
def tvm_copy(backend_artifacts, tmp_path_factory):
    if "tvm" not in backend_artifacts:
        pytest.skip("the tvm extra is not installed")
    path = tmp_path_factory.mktemp("fuzz") / "tvm"
    shutil.copytree(backend_artifacts["tvm"], path)
    return path


def _original(folder, name: str):
    return json.loads((folder / name).read_text())


@pytest.mark.timeout(300)
def test_an_edited_manifest_never_loads_and_never_raises_a_traceback(ort_copy):
    original = _original(ort_copy, "manifest.json")

    @FUZZ
    @given(mutations(original))
    def check(manifest):
        _write(ort_copy / "manifest.json", manifest)
        if essence(manifest) != essence(original):
            with pytest.raises((ArtifactError, InputError)):
                load(ort_copy)
        else:
            try:
                load(ort_copy)
            except (ArtifactError, InputError):
                pass

    try:
        check()
    finally:
        _write(ort_copy / "manifest.json", original)


@pytest.mark.timeout(300)
def test_a_resealed_manifest_loads_and_runs_or_fails_with_one_error(ort_copy):
    original = _original(ort_copy, "manifest.json")

    @FUZZ
    @given(mutations(original))
    def check(manifest):
        reseal(ort_copy, manifest)
        _write(ort_copy / "manifest.json", manifest)
        try:
            load(ort_copy).predict(["i love this film", "bad"])
        except EdgekilnError:
            pass

    try:
        check()
    finally:
        _write(ort_copy / "manifest.json", original)


@pytest.mark.timeout(300)
def test_a_resealed_tvm_index_never_loads_a_library_from_outside(tvm_copy):
    import tvm

    manifest, index = _original(tvm_copy, "manifest.json"), _original(tvm_copy, "tvm.json")
    root = tvm_copy.resolve()
    real_load = tvm.runtime.load_module
    feeds = {name: np.ones((2, 8), np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}

    def guarded_load(path, *args, **kwargs):
        assert root in type(root)(path).resolve().parents, f"loaded {path} from outside the artifact"
        return real_load(path, *args, **kwargs)

    @FUZZ
    @given(mutations(index))
    def check(changed_index):
        _write(tvm_copy / "tvm.json", changed_index)
        sealed = copy.deepcopy(manifest)
        reseal(tvm_copy, sealed)
        _write(tvm_copy / "manifest.json", sealed)
        try:
            load(tvm_copy).run(feeds)
        except EdgekilnError:
            pass

    try:
        with mock.patch.object(tvm.runtime, "load_module", guarded_load):
            check()
    finally:
        _write(tvm_copy / "tvm.json", index)
        _write(tvm_copy / "manifest.json", manifest)
    assert artifact_identity(_original(tvm_copy, "manifest.json")) == manifest["artifact_id"]
