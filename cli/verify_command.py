"""`edgekiln verify ARTIFACT [--emulate]`: check an artifact's outputs against the reference outputs
the build machine stored in it, here (runtime only) or on an emulated aarch64 machine."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgekiln.runtime.artifact import check_artifact, read_manifest
from edgekiln.runtime.errors import EdgekilnError
from edgekiln.runtime.images.reference import LEVELS
from edgekiln.runtime.verify import verify_artifact

from .parsing import positive_int
from .signing_commands import add_trusted_key_option


class VerifyFailed(EdgekilnError):
    """The artifact ran, and its outputs differ from the stored reference beyond the threshold."""


def register(commands) -> None:
    verify = commands.add_parser("verify", help="check an artifact's outputs against its stored reference outputs")
    verify.add_argument("artifact", type=Path)
    verify.add_argument(
        "--emulate",
        action="store_true",
        help="run an aarch64 artifact on an emulated aarch64 machine (qemu-user; the Debian "
        "sysroot is built once into the cache)",
    )
    verify.add_argument("--threads", type=positive_int)
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    add_trusted_key_option(verify)
    verify.set_defaults(handler=cmd_verify)


def cmd_verify(args) -> int:
    if args.emulate:
        from edgekiln.compiler.cache import default_cache_dir

        if args.trusted_key:  # the emulated runtime gets no keys: check the signature here first
            check_artifact(args.artifact, read_manifest(args.artifact, trusted_keys=args.trusted_key))
        from edgekiln.compiler.emulation.emulate import verify_emulated

        report = verify_emulated(
            args.artifact, default_cache_dir(), lambda message: print(f"  {message}", file=sys.stderr)
        )
    else:
        report = verify_artifact(args.artifact, threads=args.threads, trusted_keys=args.trusted_key)
    pre = report.get("preprocess") or {}  # image artifacts: the decoding and preprocessing check
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        where = (
            f"emulated {report['machine']} ({report['emulated']['seconds']} s)"
            if "emulated" in report
            else report["machine"]
        )
        print(
            f"artifact {report['artifact']} ({report['backend']}, {report['precision']}) on {where}: "
            f"{len(report['cases'])} reference cases, max abs diff {report['max_abs_diff']:.2e}, "
            f"min cosine {report['min_cosine']:.6f} -> {'PASS' if report['passed'] else 'FAIL'} "
            f"({_limits(report['threshold'])})"
        )
        if pre and "skipped" not in pre:
            print(
                f"image preprocessing (decode, resize, normalise a stored test image): max abs diff "
                f"{pre['max_abs_diff']:.2e} -> {'PASS' if pre['passed'] else 'FAIL'} (threshold {pre['threshold']:.3g})"
            )
        elif pre:
            print(f"image preprocessing not checked: {pre['skipped']}")
    if pre.get("passed") is False:
        raise VerifyFailed(
            f"this machine's image preprocessing differs from the build machine's by {pre['max_abs_diff']:.3g} "
            f"(more than {LEVELS} pixel levels)",
            hint="install the Pillow version the artifact was built with (inspect shows its tool versions)",
        )
    if not report["passed"]:
        raise VerifyFailed(
            f"outputs differ from the stored reference beyond the limit ({_limits(report['threshold'])})",
            hint="recompile; if it persists, report the backend and target",
        )
    return 0


def _limits(threshold) -> str:
    """{"max_abs_diff": 0.0001} -> "limit: max abs diff 0.0001"."""
    if not isinstance(threshold, dict):
        return f"limit {threshold}"
    return "limit: " + ", ".join(f"{key.replace('_', ' ')} {value:g}" for key, value in threshold.items())
