"""A pool of per-call objects (OpenVINO infer requests, TVM virtual machines) for sessions shared
between threads: each call takes one that no other call is using and gives it back afterwards.
They are created on demand, at most `limit` of them; further callers wait for one to be free."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Generic, TypeVar

from ..cpus import available_cpus

Item = TypeVar("Item")


def default_limit() -> int:
    """As many concurrent calls as CPU cores (at least 2): more would only share the same cores."""
    return max(2, available_cpus())


class Pool(Generic[Item]):
    def __init__(self, factory: Callable[[], Item], limit: int | None = None) -> None:
        self._factory = factory
        self._idle: list[Item] = []
        self._lock = threading.Lock()
        self._create = threading.Lock()  # backends need not allow creating two at once
        self._slots = threading.BoundedSemaphore(limit or default_limit())
        self.created = 0

    def add(self, item: Item) -> None:
        """Hand the pool an item made beforehand (e.g. at load time, so load errors surface there)."""
        with self._lock:
            self._idle.append(item)
            self.created += 1

    def prime(self) -> None:
        """Create one item now (so that a factory that fails does so at load time, not at the first call)."""
        self.add(self._factory())

    @contextmanager
    def take(self) -> Iterator[Item]:
        with self._slots:
            with self._lock:
                item = self._idle.pop() if self._idle else None
            if item is None:
                with self._create:
                    item = self._factory()
                with self._lock:
                    self.created += 1
            try:
                yield item
            finally:
                with self._lock:
                    self._idle.append(item)
