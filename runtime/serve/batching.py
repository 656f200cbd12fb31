"""One worker thread per model: the only thread that calls the model, and where requests merge.

A request becomes a `Job`. The worker takes the oldest job, then gathers jobs with the same key
until `max_batch` rows or until `max_wait_ms` after the first job arrived, runs them as one call
and hands each job its share. Jobs that cannot join (another key, too many rows) wait for the
next call in arrival order. At most `max_queue` jobs are admitted (waiting or running); past that
`submit` refuses, which the app answers with 503 and Retry-After.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from .errors import ServeError

Done = Callable[[Any, BaseException | None], None]
Runner = Callable[[list[Any]], list[Any]]  # payloads of one merged call -> one result per payload


@dataclass(eq=False)  # jobs are told apart by identity: payloads are arrays, which do not compare as bools
class Job:
    runner: Runner
    payload: Any
    rows: int
    key: Hashable
    done: Done
    arrived: float = field(default_factory=time.monotonic)


class QueueFull(ServeError):
    def __init__(self, model: str, limit: int) -> None:
        super().__init__(
            503,
            f"model {model} has {limit} requests queued, its limit (--max-queue); retry shortly",
            headers={"Retry-After": "1"},
        )


_STOP = object()


class ModelWorker:
    def __init__(
        self,
        name: str,
        *,
        max_batch: int,
        max_wait_ms: float,
        max_queue: int,
        on_batch: Callable[[int], None] = lambda rows: None,
    ) -> None:
        self.name = name
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self._on_batch = on_batch
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._waiting: deque[Job] = deque()  # taken from the queue but not yet run (another key)
        self._admitted = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=f"edgekiln-serve-{name}", daemon=True)

    @property
    def depth(self) -> int:
        """Jobs admitted and not yet answered (waiting or running)."""
        return self._admitted

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Finish every admitted job, then end the thread."""
        self._queue.put(_STOP)
        self._thread.join(timeout)

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._admitted >= self.max_queue:
                raise QueueFull(self.name, self.max_queue)
            self._admitted += 1
        self._queue.put(job)

    # -- the worker thread --------------------------------------------------------------------------
    def _loop(self) -> None:
        stopping = False
        while not (stopping and not self._waiting):
            first = self._waiting.popleft() if self._waiting else self._queue.get()
            if first is _STOP:
                stopping = True
                continue
            batch = [first]
            try:
                stopping = self._gather(batch) or stopping
            except Exception as exc:  # noqa: BLE001 - a bug here fails the jobs in hand, never the worker
                self._finish(batch, [None] * len(batch), exc)
                continue
            self._run(batch)

    def _gather(self, batch: list[Job]) -> bool:
        """Add to `batch` (its first job given) the jobs that merge with it; whether a stop was seen."""
        first, rows = batch[0], batch[0].rows
        for job in list(self._waiting):  # set aside earlier: oldest first
            if rows >= self.max_batch:
                break
            if job.key == first.key and rows + job.rows <= self.max_batch:
                self._waiting.remove(job)
                batch.append(job)
                rows += job.rows
        deadline = first.arrived + self.max_wait
        while rows < self.max_batch:
            remaining = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP:
                return True
            if job.key == first.key and rows + job.rows <= self.max_batch:
                batch.append(job)
                rows += job.rows
            else:
                self._waiting.append(job)
        return False

    def _run(self, batch: list[Job]) -> None:
        try:
            results = batch[0].runner([job.payload for job in batch])
        except Exception as exc:  # noqa: BLE001 - handed to the request, never kills the worker
            if len(batch) > 1:  # one bad request must not fail the others: run each alone
                for job in batch:
                    self._run([job])
                return
            self._finish(batch, [None], exc)
            return
        self._on_batch(sum(job.rows for job in batch))
        self._finish(batch, results, None)

    def _finish(self, batch: list[Job], results: list[Any], error: BaseException | None) -> None:
        for job, result in zip(batch, results):
            with self._lock:
                self._admitted -= 1
            try:
                job.done(result, error)
            except Exception:  # noqa: BLE001 - the event loop has closed: nobody is waiting
                pass
