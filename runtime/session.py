"""A loaded artifact: `predict(texts)` for text tasks and `run(feeds)` for raw tensors."""

from __future__ import annotations

import numbers
import operator
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from .artifact import check_artifact, read_manifest
from .backends import BackendOptions, BackendSession, is_builtin, open_backend
from .backends.base import Device
from .cpus import available_cpus
from .errors import BackendUnavailableError, EdgekilnError, InputError
from .feeds import check_feeds
from .manifest import Manifest, Task
from .outputs import check_outputs
from .postprocess import Classification, TokenTag
from .preprocess import TextEncoder
from .tasks import task_spec

PREDICT_BATCH = 32  # items per model call in predict


class Session:
    def __init__(
        self, folder: Path, manifest: Manifest, backend: BackendSession, encoder: TextEncoder | None, threads: int
    ) -> None:
        self.folder = folder
        self.manifest = manifest
        self.backend = backend
        self.encoder = encoder
        self.threads = threads
        self.task_spec = task_spec(manifest.task)
        self._plugin = not is_builtin(manifest.backend)  # its outputs are checked against the manifest

    @property
    def task(self) -> Task:
        return self.manifest.task

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on named arrays; dtypes are converted to the manifest's, names and ranks checked."""
        return self.run_checked(self._check_feeds(feeds))

    def run_checked(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run feeds already checked (the encoders' own). A plugin backend's failure is named as the
        plugin's, and its outputs are checked against the manifest."""
        if not self._plugin:
            return self.backend.run(feeds)
        try:
            outputs = self.backend.run(feeds)
        except EdgekilnError:
            raise
        except Exception as exc:
            raise BackendUnavailableError(
                f"backend plugin {self.manifest.backend!r} failed to run: {type(exc).__name__}: {exc}",
                hint="a fault of the plugin or its device: report it to the plugin's authors",
            ) from None
        check_outputs(outputs, feeds, self.manifest)
        return outputs

    def predict(self, items: Sequence[str] | str, *, batch_size: int = PREDICT_BATCH, **options):
        """Answers by task: Classifications, per-word tags, or a float32 array [n, dim] of embeddings.
        Images (paths, bytes, PIL images, uint8 arrays) for an image classifier, which takes `top=5`.
        A list runs `batch_size` items per model call, so memory stays bounded however long it is."""
        if items is None or isinstance(items, Mapping):
            raise InputError(
                f"predict: expected a text or a list of items, found {type(items).__name__}",
                hint="pass e.g. ['a first text', 'a second'] (images: paths, bytes, PIL images or arrays)",
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise InputError(f"predict: batch_size must be a positive integer, found {batch_size!r}")
        if self.pad_sensitive:
            batch_size = 1  # padding would change its answers: each text alone
        batched = isinstance(items, (list, tuple)) or (isinstance(items, np.ndarray) and items.ndim == 4)  # noqa: PLR2004
        if not batched or len(items) <= batch_size:
            return self.task_spec.predict(self, items, **options)
        parts = [
            self.task_spec.predict(self, items[start : start + batch_size], **options)
            for start in range(0, len(items), int(batch_size))
        ]
        return np.concatenate(parts) if isinstance(parts[0], np.ndarray) else [one for part in parts for one in part]

    @property
    def pad_sensitive(self) -> bool:
        """A text model whose answers change with padding (the manifest says so): one text per call."""
        return self.manifest.tokenizer is not None and self.manifest.tokenizer.pad_sensitive

    def warm_up(self, batches: Sequence[int] = (1,)):
        """Run the one-time work of the first calls now (see warmup.py); returns a `WarmUp` (what ran, how long)."""
        from .warmup import warm_up

        return warm_up(self, batches)

    def _check_feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return check_feeds(feeds, self.manifest.inputs, self.manifest.tokenizer)


def load(
    path: str | os.PathLike,
    *,
    threads: int | None = None,
    device: str | Device = Device.AUTO,
    verify: bool = True,
    trusted_keys: Iterable[str | os.PathLike | bytes] | None = None,
) -> Session:
    """Load an artifact folder: check its schema, its artifact_id and every file's hash (all but the
    hashes even with verify=False), then open its backend. With `trusted_keys` (PEM public key files,
    or PEM or raw Ed25519 key bytes) it must be signed by one of them."""
    if not isinstance(path, (str, os.PathLike)):
        raise InputError(f"load: expected an artifact folder's path, found {path!r}")
    folder = Path(path)
    manifest = read_manifest(folder, trusted_keys=trusted_keys)
    check_artifact(folder, manifest, hashes=verify)
    threads = _threads(threads, manifest)
    try:
        device = Device(device)
    except ValueError:
        raise InputError(f"unknown device {device!r}", hint=f"use one of {[d.value for d in Device]}") from None
    backend = open_backend(folder, manifest, BackendOptions(threads=threads, device=device, verified=verify))
    encoder = task_spec(manifest.task).preprocessor(folder, manifest)
    return Session(folder, manifest, backend, encoder, threads)


def _threads(threads: int | None, manifest: Manifest) -> int:
    cores = available_cpus()
    if threads is None:
        return min(manifest.target.threads, cores)
    try:
        count = operator.index(threads) if not isinstance(threads, bool) else None
    except TypeError:
        count = None
    if count is None or count < 1:
        raise InputError(f"threads must be a positive integer, found {threads!r}")
    if count > cores:
        warnings.warn(
            f"threads={count} is more than the {cores} CPUs this process may use; using {cores}", stacklevel=3
        )
        return cores
    return count


__all__ = ["Classification", "Session", "TokenTag", "load"]
