"""`edgekiln keygen OUT` and `edgekiln sign ARTIFACT --key KEY`: Ed25519 signatures on artifacts,
checked by `run`, `bench` and `verify` given `--trusted-key OWNER.pub`."""

from __future__ import annotations

from pathlib import Path

from edgekiln.runtime.signing import generate_key, sign_artifact


def register(commands) -> None:
    keygen = commands.add_parser("keygen", help="make an Ed25519 key pair for signing artifacts")
    keygen.add_argument("out", type=Path, help="private key file to write (the public key goes to OUT.pub)")
    keygen.set_defaults(handler=cmd_keygen)

    sign = commands.add_parser("sign", help="sign an artifact's manifest with an Ed25519 private key")
    sign.add_argument("artifact", type=Path)
    sign.add_argument("--key", type=Path, required=True, help="private key file (from `edgekiln keygen`)")
    sign.set_defaults(handler=cmd_sign)


def add_trusted_key_option(parser) -> None:
    """`--trusted-key FILE` (repeatable): refuse the artifact unless one of these keys signed it."""
    parser.add_argument(
        "--trusted-key",
        type=Path,
        action="append",
        metavar="FILE",
        help="Ed25519 public key (PEM, from `edgekiln keygen`); the artifact must be signed by "
        "one of the keys given (repeatable)",
    )


def cmd_keygen(args) -> int:
    private, public = generate_key(args.out)
    print(f"private key: {private} (keep it secret)\npublic key:  {public} (give it to the devices)")
    return 0


def cmd_sign(args) -> int:
    path = sign_artifact(args.artifact, args.key)
    print(f"signed: {path}")
    return 0
