"""The command line's last line of defence: what is not a user error still ends as one line.

An unexpected exception prints the command and the exception, writes the traceback to a log file
whose path it prints, and exits with code 3; `edgekiln --debug` prints the traceback instead.
"""

from __future__ import annotations

import io
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

EXIT_INTERNAL_ERROR = 3
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for `yes | head -1`


def not_utf8(argv: Sequence[str]) -> str | None:
    """One error line for the first argument that is not valid UTF-8 (Python keeps such bytes as
    lone surrogates), or None."""
    for index, arg in enumerate(argv, start=1):
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            raw = arg.encode("utf-8", "surrogateescape")
            return f"argument {index} ({raw!r}) is not valid UTF-8; pass text and paths as UTF-8"
    return None


def one_line(text: str) -> str:
    """`text` on one line: line breaks and other control characters (from a file's content quoted in
    a message) are written as escapes."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii") for c in text
    )


def report_crash(command: str, exc: BaseException, argv: Sequence[str], *, debug: bool) -> int:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if debug:
        sys.stderr.write(text)
        return EXIT_INTERNAL_ERROR
    log = _write_log(text, argv)
    where = f"traceback in {log}" if log else "the traceback could not be saved"
    print(
        f"edgekiln: internal error in `edgekiln {command}`: {type(exc).__name__}: {_first_line(exc)} "
        f"({where}; `edgekiln --debug {command} ...` prints it; please report it)",
        file=sys.stderr,
    )
    return EXIT_INTERNAL_ERROR


def quiet_broken_pipe() -> int:
    """The reader of stdout went away (`edgekiln run ART - | head -1`): stop without a word, and
    point stdout at /dev/null so the interpreter's final flush does not complain either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError, io.UnsupportedOperation):
        pass
    return EXIT_BROKEN_PIPE


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = one_line(lines[0]) if lines else "(no message)"
    return text if len(text) <= 200 else text[:197] + "..."


def _write_log(text: str, argv: Sequence[str]) -> Path | None:
    # compiler.cache needs the standard library only: this works on a runtime-only install
    from edgekiln.compiler.cache import default_cache_dir

    header = (
        f"edgekiln {_version()} on Python {platform.python_version()} ({platform.platform()})\n"
        f"argv: {[arg.encode('utf-8', 'backslashreplace').decode() for arg in argv]}\n\n"
    )
    name = f"crash-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    for folder in (default_cache_dir() / "logs", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / name
            path.write_text(header + text, encoding="utf-8", errors="backslashreplace")
            return path
        except OSError:
            continue
    return None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgekiln")
    except PackageNotFoundError:
        return "(unknown version)"
