"""OpenVINO's compiled-model cache stays within its limit: least recently used artifacts go first."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgekiln.runtime.backends.openvino_cache import LIMIT_ENV, cache_folder, limit_bytes, trim
from edgekiln.runtime.errors import InputError

NOW = 1_000_000.0


def _entry(root, name, size, age):
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "blob").write_bytes(b"x" * size)
    for path in (folder / "blob", folder):
        os.utime(path, (NOW - age, NOW - age))
    return folder


def test_the_oldest_go_first_until_the_total_fits(tmp_path):
    old, middle, new = (_entry(tmp_path, name, 100, age) for name, age in (("a", 900), ("b", 600), ("c", 300)))
    assert trim(tmp_path, keep=new, limit=150, now=NOW) == [old, middle]
    assert [path.name for path in tmp_path.iterdir()] == ["c"]


def test_the_kept_folder_and_recent_ones_stay_even_over_the_limit(tmp_path):
    kept = _entry(tmp_path, "kept", 100, 900)
    recent = _entry(tmp_path, "recent", 100, 10)  # another process may be writing its blob now
    old = _entry(tmp_path, "old", 100, 500)
    assert trim(tmp_path, keep=kept, limit=0, now=NOW) == [old]
    assert kept.exists() and recent.exists()


def test_nothing_is_removed_within_the_limit_or_from_a_missing_root(tmp_path):
    entries = [_entry(tmp_path, name, 100, 900) for name in "abc"]
    assert trim(tmp_path, keep=entries[0], limit=300, now=NOW) == []
    assert trim(tmp_path / "none", keep=entries[0], limit=0, now=NOW) == []


def test_a_file_in_the_use_of_a_folder_counts_as_its_last_use(tmp_path):
    first = _entry(tmp_path, "first", 100, 900)
    os.utime(first / "blob", (NOW - 5, NOW - 5))  # a static shape compiled into it just now
    second = _entry(tmp_path, "second", 100, 800)
    assert trim(tmp_path, keep=tmp_path / "other", limit=100, now=NOW) == [second]


@pytest.mark.parametrize(("text", "expected"), [("", 4 * 2**30), ("0", 0), ("2", 2 * 2**30), (" 0.5 ", 2**29)])
def test_the_limit_comes_from_the_environment(monkeypatch, text, expected):
    monkeypatch.setenv(LIMIT_ENV, text)
    assert limit_bytes() == expected


@given(st.text(max_size=12).filter(lambda text: text.strip() not in ("",)))
def test_a_limit_that_is_not_a_size_is_one_error_line(text):
    try:
        value = float(text.strip())
    except ValueError:
        value = None
    os.environ[LIMIT_ENV] = text if "\x00" not in text else "nan"
    try:
        if value is not None and 0 <= value < float("inf") and "\x00" not in text:
            assert limit_bytes() == int(value * 2**30)
        else:
            with pytest.raises(InputError, match=f"{LIMIT_ENV}=.* is not a size"):
                limit_bytes()
    finally:
        del os.environ[LIMIT_ENV]


def test_the_folder_is_always_inside_the_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEKILN_CACHE", str(tmp_path))
    assert cache_folder("00ff") == tmp_path / "openvino" / "00ff"
    assert cache_folder("../../etc").parent == tmp_path / "openvino"
