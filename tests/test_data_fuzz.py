"""Fuzzing the data loaders: random bytes and mutated valid files give a Dataset or one DataError."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgekiln.cli.guard import one_line
from edgekiln.compiler.data import DataError, DataFormat, Dataset, load_dataset

VALID = {
    ".tsv": "sentence\tlabel\nit 's good\t1\nbad movie\t0\n",
    ".csv": 'id,text,label\n1,"good, really",pos\n2,meh,neg\n',
    ".jsonl": json.dumps({"text": "yes", "label": 1}) + "\n" + json.dumps({"text": "no", "label": 0}) + "\n",
    ".conll": "-DOCSTART- -X- -X- O\n\nEU NNP B-NP I-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP I-PER\n",
}
SUFFIXES = (*VALID, ".txt", ".train", "")  # the last ones: known as CoNLL, or told by their content
SPECIAL = [
    b'"',
    b"\t",
    b",",
    b"\n",
    b"\r",
    b"\x00",
    b"{",
    b"}",
    b"[",
    b":",
    b"-DOCSTART-",
    b"B-",
    b"I-",
    b"\xff",
    b"\xe2\x82",
    b" ",
    b"\\",
    b"1" * 5000,
    b"[" * 3000,
]
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _load_or_clear_error(path, data_format) -> None:
    try:
        result = load_dataset(path, format=data_format)
    except DataError as exc:  # the CLI prints it as one line (control characters escaped)
        assert one_line(str(exc)).strip() and str(path.name) in str(exc)
    else:
        assert isinstance(result, Dataset) and len(result) > 0


@st.composite
def _mutated(draw) -> tuple[str, bytes]:
    suffix = draw(st.sampled_from(sorted(VALID)))
    content = bytearray(VALID[suffix].encode())
    for _ in range(draw(st.integers(1, 6))):
        where = draw(st.integers(0, len(content)))
        operation = draw(st.sampled_from(["insert", "delete", "duplicate", "replace"]))
        if operation == "insert":
            content[where:where] = draw(st.sampled_from(SPECIAL) | st.binary(min_size=1, max_size=8))
        elif operation == "delete":
            del content[where : where + draw(st.integers(1, 20))]
        elif operation == "duplicate":
            content[where:where] = content[where : where + draw(st.integers(1, 40))]
        elif content:
            content[min(where, len(content) - 1)] = draw(st.integers(0, 255))
    return suffix, bytes(content)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(
    content=st.binary(max_size=2048),
    suffix=st.sampled_from(SUFFIXES),
    data_format=st.none() | st.sampled_from([f for f in DataFormat if f is not DataFormat.HF_DISK]),
)
def test_random_bytes(folder, content, suffix, data_format):
    path = folder / f"random{suffix}"
    path.write_bytes(content)
    _load_or_clear_error(path, data_format)


@FUZZ
@given(
    mutated=_mutated(),
    rename=st.booleans(),
    data_format=st.none() | st.sampled_from([f for f in DataFormat if f is not DataFormat.HF_DISK]),
)
def test_mutated_valid_files(folder, mutated, rename, data_format):
    suffix, content = mutated
    path = folder / ("mutated.data" if rename else f"mutated{suffix}")
    path.write_bytes(content)
    _load_or_clear_error(path, data_format)
