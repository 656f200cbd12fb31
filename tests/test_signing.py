"""Ed25519 signing: `edgekiln keygen`, `edgekiln sign`, and `--trusted-key` / `load(trusted_keys=)`
refusing unsigned, wrongly signed and re-sealed artifacts."""

from __future__ import annotations

import base64
import json
import shutil
import stat

import pytest

pytest.importorskip("cryptography", reason="the sign extra is not installed")

from edgekiln.cli.main import main  # noqa: E402
from edgekiln.runtime import ArtifactError, InputError, load  # noqa: E402
from edgekiln.runtime.signing import SIGNATURE_FILE, check_private_key, generate_key, public_key_bytes, sign_artifact  # noqa: E402

from .artifact_tools import edit_manifest  # noqa: E402


@pytest.fixture
def signed(artifacts, tmp_path):
    """A copy of the tiny classifier signed by `owner`, and a second key pair `stranger`."""
    owner, owner_pub = generate_key(tmp_path / "owner")
    _, stranger_pub = generate_key(tmp_path / "stranger")
    path = tmp_path / "artifact"
    shutil.copytree(artifacts["sequence"], path)
    sign_artifact(path, owner)
    return path, owner, owner_pub, stranger_pub


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("edgekiln: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_keys_are_written_once_and_the_private_key_is_private(tmp_path):
    private, public = generate_key(tmp_path / "k")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert public.name == "k.pub" and public.read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert len(public_key_bytes(public)) == 32 == len(public_key_bytes(public.read_bytes()))
    with pytest.raises(InputError, match="already exists"):
        generate_key(tmp_path / "k")


def test_a_signed_artifact_loads_with_its_owners_key_in_any_form(signed):
    path, _, owner_pub, stranger_pub = signed
    record = json.loads((path / SIGNATURE_FILE).read_text())
    assert record["algorithm"] == "ed25519" and record["signed_file"] == "manifest.json"
    for keys in (
        [owner_pub],
        [str(owner_pub)],
        [owner_pub.read_bytes()],
        [public_key_bytes(owner_pub)],
        [stranger_pub, owner_pub],
        owner_pub,
    ):
        assert load(path, trusted_keys=keys).predict(["i love it"])[0].label


def test_unsigned_foreign_and_resealed_artifacts_are_refused(signed, artifacts):
    path, _, owner_pub, stranger_pub = signed
    with pytest.raises(ArtifactError, match="not signed"):
        load(artifacts["sequence"], trusted_keys=[owner_pub])
    with pytest.raises(ArtifactError, match="signed by a key that is not trusted here"):
        load(path, trusted_keys=[stranger_pub])
    # a forger swaps the labels and recomputes every hash and the id: only the signature catches it
    edit_manifest(path, lambda m: m.update(labels=list(reversed(m["labels"]))), reseal=True)
    assert load(path).manifest.labels == ("positive", "negative")  # consistent, so unsigned loading accepts it
    with pytest.raises(ArtifactError, match="signature does not match manifest.json"):
        load(path, trusted_keys=[owner_pub])
    with pytest.raises(InputError, match="trusted_keys is empty"):
        load(path, trusted_keys=[])


def test_a_forged_signature_file_is_refused(signed):
    path, _, owner_pub, _ = signed
    record = json.loads((path / SIGNATURE_FILE).read_text())
    signature = bytearray(base64.b64decode(record["signature"]))
    signature[0] ^= 1
    (path / SIGNATURE_FILE).write_text(json.dumps({**record, "signature": base64.b64encode(signature).decode()}))
    with pytest.raises(ArtifactError, match="signature does not match"):
        load(path, trusted_keys=[owner_pub])
    (path / SIGNATURE_FILE).write_text(json.dumps({**record, "signature": "not base64!"}))
    with pytest.raises(ArtifactError, match="not base64"):
        load(path, trusted_keys=[owner_pub])
    (path / SIGNATURE_FILE).write_text('{"algorithm": "rsa"}')
    with pytest.raises(ArtifactError, match="not a valid signature"):
        load(path, trusted_keys=[owner_pub])


def test_signing_refuses_a_tampered_artifact_and_a_bad_key(signed, tmp_path):
    path, owner, owner_pub, _ = signed
    with pytest.raises(InputError, match="not an unencrypted PEM private key"):
        sign_artifact(path, owner_pub)
    check_private_key(owner)  # what `compile --sign KEY` checks before compiling
    for bad in (owner_pub, tmp_path / "absent"):
        with pytest.raises(InputError, match="not an unencrypted PEM private key|cannot read private key"):
            check_private_key(bad)
    edit_manifest(path, lambda m: m.update(labels=["a", "b"]))
    with pytest.raises(ArtifactError, match="edited after the build"):
        sign_artifact(path, owner)


def test_cli_keygen_sign_and_trusted_key_on_run_verify_bench(artifacts, tmp_path, capsys):
    path = tmp_path / "artifact"
    shutil.copytree(artifacts["sequence"], path)
    assert main(["keygen", str(tmp_path / "owner")]) == 0
    assert main(["keygen", str(tmp_path / "stranger")]) == 0
    capsys.readouterr()
    owner, stranger = str(tmp_path / "owner.pub"), str(tmp_path / "stranger.pub")
    assert main(["run", str(path), "i love it", "--trusted-key", owner]) == 2
    assert "not signed" in one_line_error(capsys)
    assert main(["sign", str(path), "--key", str(tmp_path / "owner")]) == 0
    assert "signed:" in capsys.readouterr().out
    assert main(["run", str(path), "i love it", "--trusted-key", stranger, "--trusted-key", owner]) == 0
    assert main(["verify", str(path), "--trusted-key", owner]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["verify", str(path), "--trusted-key", stranger]) == 2
    assert "not trusted here" in one_line_error(capsys)
    assert main(["bench", str(path), "--trusted-key", stranger, "--runs", "1", "--seq", "8", "--no-save"]) == 2
    assert "not trusted here" in one_line_error(capsys)
    assert main(["serve", str(path), "--port", "0", "--no-warm-up", "--trusted-key", stranger]) == 2
    assert "not trusted here" in one_line_error(capsys)  # refused before it listens


def test_compile_sign_writes_a_signature_the_device_checks(bert_folders, tmp_path, capsys):
    from edgekiln.cli.main import main

    assert main(["keygen", str(tmp_path / "owner")]) == 0
    key = next(path for path in tmp_path.iterdir() if path.suffix != ".pub")
    public = next(path for path in tmp_path.iterdir() if path.suffix == ".pub")
    out = tmp_path / "signed-at-build"
    assert (
        main(["compile", str(bert_folders["sequence"]), "--target", "x86-64-avx2", "-o", str(out), "--sign", str(key)])
        == 0
    )
    assert "signed:" in capsys.readouterr().out and (out / "signature.json").is_file()
    assert main(["verify", str(out), "--trusted-key", str(public)]) == 0
    assert (
        main(
            [
                "compile",
                str(bert_folders["sequence"]),
                "--target",
                "x86-64-avx2",
                "-o",
                str(tmp_path / "x"),
                "--sign",
                str(public),
            ]
        )
        == 2
    )  # a public key is not a signing key: refused before any work
    assert not (tmp_path / "x").exists()
