"""The suite's own set-up: pytest-xdist keeps each group's tests on one worker (tests/conftest.py)."""

from __future__ import annotations

import os


def test_a_worker_sees_its_tests_grouped(request):
    """Under `--dist loadgroup` each test's id carries its group (this module's name, from conftest), so
    a module's fixtures and a matrix folder's export are built once. pytest 9.2 with pytest-xdist 3.8
    dropped the group without a word: every module's fixtures were built on both workers."""
    if not os.environ.get("PYTEST_XDIST_WORKER") or not request.config.getvalue("loadgroup"):
        return  # one process: nothing is distributed
    assert request.node.nodeid.endswith("@tests.test_suite_grouping"), request.node.nodeid
