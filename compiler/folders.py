"""Output folders: an exclusive lock for the whole build, and putting the finished folder in place
by renames only, never replacing anything that was not proven replaceable at that moment."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import CompileError

# Says why a folder must not be replaced, or None when it may be.
Replaceable = Callable[[Path], str | None]


def check_parent(target: Path) -> None:
    """One clear error when a folder above `target` is a file (`-o notes.txt/out`)."""
    for ancestor in target.parents:
        if ancestor.is_dir():
            return
        if ancestor.exists() or ancestor.is_symlink():
            raise CompileError(
                f"cannot create {target}: {ancestor} is a file, not a folder",
                hint="choose an output path under a folder",
            )


def lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.lock"


@contextmanager
def output_lock(target: Path) -> Iterator[Path]:
    """Hold an exclusive lock on `target` (the file `.NAME.lock` beside it) while the body runs; a
    second holder fails at once with one clear error. Yields the lock file's path."""
    target = Path(target)
    check_parent(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    path = lock_path(target)
    handle = _acquire(path, target)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)  # while still holding it: a waiting opener then sees a stale inode
        handle.close()


def _acquire(path: Path, target: Path):
    while True:
        try:
            handle = os.fdopen(os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644), "r+")
        except OSError as exc:  # a symlink or a folder where the lock file goes, or a folder we cannot write
            occupied = os.path.lexists(path)
            raise CompileError(
                f"cannot use {path} as the lock file of {target} ({exc.strerror})",
                hint=f"remove {path}"
                if occupied
                else f"choose another -o folder: no file can be created in {target.parent}",
            ) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = handle.read().strip() or "?"
            handle.close()
            raise CompileError(
                f"another edgekiln build is writing {target} (pid {holder} holds {path})",
                hint="wait for it to finish, or choose another -o folder",
            ) from None
        try:
            current = os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(handle.fileno()).st_ino:
            handle.truncate(0)
            handle.write(str(os.getpid()))
            handle.flush()
            return handle
        handle.close()  # the previous holder removed the file after we opened it: lock the new one


def move_into_place(finished: Path, target: Path, *, replaceable: Replaceable | None = None) -> None:
    """Rename `finished` to `target`. A folder already at `target` is replaced only when `replaceable`
    is given and accepts it, checked after it has been renamed aside (so nothing can change it between
    the check and the swap); it is then removed. When `target` is taken and may not be replaced, the
    finished folder is kept beside it and the error says where."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if _claim(finished, target):
        return
    if replaceable is None:
        _refuse(finished, target, f"{target} appeared while this build was running; it was left as it is")
    retired = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    try:
        target.rename(retired)
    except FileNotFoundError:  # removed meanwhile: the name is free again
        retired = None
    reason = None if retired is None else replaceable(retired)
    if reason is not None:
        _restore(retired, target)
        _refuse(finished, target, f"{target} {reason}; refusing to replace it")
    if not _claim(finished, target):
        if retired is not None:
            _refuse(
                finished,
                target,
                f"{target} appeared while the old folder was being replaced; the old folder is at {retired}",
            )
        _refuse(finished, target, f"{target} appeared while this build was running; it was left as it is")
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


def _claim(finished: Path, target: Path) -> bool:
    """Rename `finished` to `target` if nothing is there; False (and nothing changed) if something is.
    mkdir claims the name atomically; renaming onto our own empty folder then replaces only that."""
    try:
        target.mkdir()
    except FileExistsError:
        return False
    try:
        finished.rename(target)
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST):
            target.rmdir()
            raise
        return False  # someone wrote into our placeholder: it is theirs now
    return True


def _restore(retired: Path, target: Path) -> None:
    if not _claim(retired, target):
        raise CompileError(
            f"{target} was refused for replacement and set aside as {retired}, and something "
            f"else has appeared at {target} since",
            hint=f"move {retired} back by hand",
        )


def _refuse(finished: Path, target: Path, message: str) -> None:
    kept = target.parent / f"{target.name}.new-{uuid.uuid4().hex[:8]}"
    finished.rename(kept)
    raise CompileError(f"{message}; the new result is at {kept}", hint="move it where you want it")
