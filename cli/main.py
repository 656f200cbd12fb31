"""`edgekiln` entry point: argument parsing, dispatch, and the one-line error contract.

Every user error ends as one line on stderr and exit code 2; anything unexpected as one line, a
log file holding the traceback and exit code 3 (see guard.py). Commands that need the compiler
import it lazily, so `run`, `bench`, `inspect` and `targets` work on a runtime-only install.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import signal
import sys
import threading
import warnings
from collections.abc import Sequence

from pydantic import ValidationError

from edgekiln.runtime.errors import EdgekilnError

from . import (
    artifact_commands,
    build_commands,
    quickstart_command,
    serve_command,
    signing_commands,
    train_commands,
    tune_db_commands,
    verify_command,
)
from .guard import not_utf8, one_line, quiet_broken_pipe, report_crash

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgekiln", description="Compile models for edge devices and run them.")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an unexpected error")
    parser.add_argument("--version", action="version", version=f"edgekiln {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    build_commands.register(commands)
    quickstart_command.register(commands)
    artifact_commands.register(commands)
    train_commands.register(commands)
    verify_command.register(commands)
    signing_commands.register(commands)
    serve_command.register(commands)
    tune_db_commands.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    bad = not_utf8(argv)
    if bad is not None:
        print(f"edgekiln: error: {bad}", file=sys.stderr)
        return EXIT_USER_ERROR
    args = _parse(build_parser(), argv)
    _quiet_libraries()
    try:
        with _terminate_like_interrupt(), _one_line_warnings():
            code = args.handler(args) or 0
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return code
    except EdgekilnError as exc:
        print(f"edgekiln: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USER_ERROR
    except ValidationError as exc:  # a typed config rejected a flag's value
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        print(f"edgekiln: error: invalid value for {where}: {one_line(error['msg'])}", file=sys.stderr)
        return EXIT_USER_ERROR
    except ImportError as exc:
        print(
            f"edgekiln: error: `edgekiln {args.command}` needs a package that is not installed ({exc.name}) "
            f"(install the compiler: pip install 'edgekiln[compiler]')",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    except BrokenPipeError:
        return quiet_broken_pipe()
    except Terminated:
        print("edgekiln: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("edgekiln: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug, not a user error: one line, the traceback in a log
        return report_crash(args.command, exc, argv, debug=args.debug)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a supervisor's stop, `timeout`, `kill`), raised as Ctrl-C is, so the same cleanup runs:
    a compile removes its staging folder and lock instead of leaving them behind."""


@contextlib.contextmanager
def _terminate_like_interrupt():
    if threading.current_thread() is not threading.main_thread():  # signal handlers belong to the main thread
        yield
        return

    def terminate(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _one_line_warnings():
    """Warnings as `edgekiln: warning: ...`, without Python's file and source line."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)):
            return  # a library's notice to its own developers (transformers' renamed attributes), not the user's
        print(f"edgekiln: warning: {one_line(str(message))}", file=sys.stderr)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def _quiet_libraries() -> None:
    """The CLI prints its own progress; silence transformers' weight-loading bars if it is loaded later."""
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("edgekiln")
    except PackageNotFoundError:  # a checkout that was never installed
        return "(not installed)"


def _parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """parse_args, but an unknown command or flag gets the closest one there is, and a flag is reported
    by the parser it was given to (its command's usage, not the top level's, past the command)."""
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))  # noqa: SLF001
    position = next((i for i, arg in enumerate(argv) if not arg.startswith("-")), None)
    if position is not None and argv[position] not in commands.choices:
        close = difflib.get_close_matches(argv[position], list(commands.choices), n=1)
        parser.error(f"unknown command {argv[position]!r}" + (f" (did you mean {close[0]}?)" if close else ""))
    args, extras = parser.parse_known_args(argv)
    if extras:
        before = [extra for extra in extras if position is not None and extra in argv[:position]]
        owner = parser if before else commands.choices[args.command]
        owner.error(f"unrecognized arguments: {' '.join(extras)}{_suggestions(owner, before or extras)}")
    return args


def _suggestions(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """` (did you mean --target? --quantize?)` for each unknown flag that is close to one `parser` has."""
    flags = [flag for action in parser._actions for flag in action.option_strings]  # noqa: SLF001
    close = [
        match[0]
        for extra in extras
        if extra.startswith("-") and (match := difflib.get_close_matches(extra.split("=", 1)[0], flags, n=1))
    ]
    return f" (did you mean {' '.join(flag + '?' for flag in close)})" if close else ""


if __name__ == "__main__":
    sys.exit(main())
