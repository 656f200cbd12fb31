"""The artifact verifies itself: an edited manifest, an unlisted file, a path leaving the folder,
a malformed .npz or a hostile tvm.json is one ArtifactError, before any library is loaded."""

from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pytest

from edgekiln.cli.main import main
from edgekiln.compiler import compile
from edgekiln.runtime import ArtifactError, load
from edgekiln.runtime.backends.openvino_cache import cache_folder
from edgekiln.runtime.manifest import artifact_identity

from .artifact_tools import edit_manifest, read_manifest_json, reseal_manifest, write_manifest_json

EDITS = {
    "labels swapped": lambda m: m.update(labels=list(reversed(m["labels"]))),
    "an entry removed from files": lambda m: m["files"].pop("reference.npz"),
    "tokenizer max_length": lambda m: m["tokenizer"].update(max_length=8),
    "tokenizer pad token": lambda m: m["tokenizer"].update(pad_token="[UNK]", pad_id=1),
    "a pass's config": lambda m: m["passes"][0]["config"].update(opset=17),
    "target threads": lambda m: m["target"].update(threads=1),
}


@pytest.fixture
def copy_of(tmp_path):
    def make(path):
        target = tmp_path / f"copy-{path.name}"
        shutil.copytree(path, target, symlinks=True)
        return target

    return make


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("edgekiln: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_an_edited_manifest_is_refused_by_load_and_verify(edit, artifacts, copy_of, capsys):
    path = copy_of(artifacts["sequence"])
    edit_manifest(path, EDITS[edit])
    with pytest.raises(ArtifactError, match="does not match its artifact_id .* edited after the build"):
        load(path)
    assert main(["verify", str(path)]) == 2
    assert "edited after the build" in one_line_error(capsys)


def test_build_time_and_pass_timings_are_not_part_of_the_identity(artifacts, copy_of):
    path = copy_of(artifacts["sequence"])

    def retime(manifest):
        manifest["created_at"] = "2001-01-01T00:00:00+00:00"
        for record in manifest["passes"]:
            record.update(seconds=record["seconds"] + 7.5, cached=not record["cached"])

    edit_manifest(path, retime)
    assert load(path).manifest.artifact_id == read_manifest_json(artifacts["sequence"])["artifact_id"]


def test_the_identity_covers_every_other_field(artifacts):
    manifest = read_manifest_json(artifacts["sequence"])
    assert artifact_identity(manifest) == manifest["artifact_id"]
    for key, value in manifest.items():
        if key in ("artifact_id", "created_at"):
            continue
        changed = json.loads(json.dumps(manifest))
        changed[key] = value[:-1] if key == "passes" else {"other": 1} if value != {"other": 1} else None
        assert artifact_identity(changed) != manifest["artifact_id"], f"{key} is not part of the identity"
    for key in ("name", "config", "input_sha256", "output_sha256"):
        changed = json.loads(json.dumps(manifest))
        changed["passes"][0][key] = "other"
        assert artifact_identity(changed) != manifest["artifact_id"], f"passes[].{key} is not part of the identity"


def test_a_rebuild_without_the_cache_has_the_same_artifact_id(bert_folders, artifacts, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEKILN_CACHE", str(tmp_path / "fresh-cache"))
    again = compile(bert_folders["sequence"], "x86-64-avx2", tmp_path / "again")
    assert not any(record.cached for record in again.manifest.passes)
    assert again.manifest.artifact_id == read_manifest_json(artifacts["sequence"])["artifact_id"]


def test_schema_1_artifacts_ask_for_a_recompile(artifacts, copy_of):
    path = copy_of(artifacts["sequence"])
    edit_manifest(path, lambda m: m.update(schema_version=1))
    with pytest.raises(ArtifactError, match="schema version 1 is older .*recompile"):
        load(path)


@pytest.mark.parametrize("file", ["tokenizer.json", "reference.npz", "model.onnx"])
def test_every_file_the_runtime_opens_must_be_listed(file, artifacts, copy_of):
    """Even with the id recomputed (as a forger would), an unlisted file is never opened unchecked."""
    path = copy_of(artifacts["sequence"])
    edit_manifest(path, lambda m: m["files"].pop(file), reseal=True)
    with pytest.raises(ArtifactError, match=f"does not list '{file}' among its hashed files"):
        load(path)


@pytest.mark.parametrize(
    "field, value",
    [
        ("model_file", "/etc/passwd"),
        ("model_file", "../model.onnx"),
        ("reference", "sub/../../reference.npz"),
        ("tokenizer", "..\\tokenizer.json"),
        ("files", "/tmp/x"),
    ],
)
def test_manifest_paths_must_stay_inside_the_folder(field, value, artifacts, copy_of):
    path = copy_of(artifacts["sequence"])

    def point_outside(manifest):
        if field == "tokenizer":
            manifest["tokenizer"]["file"] = value
        elif field == "files":
            manifest["files"][value] = "0" * 64
        else:
            manifest[field] = value

    edit_manifest(path, point_outside, reseal=True)
    with pytest.raises(ArtifactError, match="outside the artifact folder|not a plain relative path"):
        load(path)


def test_a_symlink_leaving_the_folder_is_refused_even_with_the_right_hash(artifacts, copy_of, tmp_path):
    path = copy_of(artifacts["sequence"])
    outside = tmp_path / "elsewhere.json"
    shutil.copyfile(path / "tokenizer.json", outside)
    (path / "tokenizer.json").unlink()
    (path / "tokenizer.json").symlink_to(outside)
    with pytest.raises(ArtifactError, match="tokenizer.json.*outside the artifact folder"):
        load(path)


def test_artifact_id_is_hex_and_the_openvino_cache_stays_in_its_folder(artifacts, copy_of, tmp_path, monkeypatch):
    path = copy_of(artifacts["sequence"])
    edit_manifest(path, lambda m: m.update(artifact_id="../../../escape"))
    with pytest.raises(ArtifactError, match="field `artifact_id`"):
        load(path)
    monkeypatch.setenv("EDGEKILN_CACHE", str(tmp_path / "cache"))
    root = (tmp_path / "cache" / "openvino").resolve()
    for hostile in ("../../etc", "/abs", "a/b", "..", "", "ABC", "0123\0"):
        assert cache_folder(hostile).resolve().parent == root, hostile
    assert cache_folder("0123456789abcdef") == tmp_path / "cache" / "openvino" / "0123456789abcdef"


def _rewrite_npz(path, change) -> None:
    with np.load(path) as stored:
        arrays = {key: stored[key] for key in stored.files}
    change(arrays)
    np.savez(path, **arrays)  # np.savez pickles object arrays: exactly what a loader must refuse


REFERENCE_DAMAGE = {
    "an object array": lambda a: a.update({"0/output/logits": np.array([{"a": 1}], dtype=object)}),
    "a key outside the layout": lambda a: a.update({"junk": np.zeros(2)}),
    "a missing output": lambda a: a.pop("1/output/logits"),
    "strings": lambda a: a.update({"0/input/input_ids": np.array([["7"] * 11])}),
    "non-integral ids": lambda a: a.update({"0/input/input_ids": a["0/input/input_ids"] + 0.5}),
}


@pytest.mark.parametrize("damage", sorted(REFERENCE_DAMAGE))
def test_a_malformed_reference_npz_is_one_error(damage, artifacts, copy_of, capsys):
    path = copy_of(artifacts["sequence"])
    _rewrite_npz(path / "reference.npz", REFERENCE_DAMAGE[damage])
    edit_manifest(path, lambda m: None, reseal=True)
    assert main(["verify", str(path)]) == 2
    assert "reference.npz" in one_line_error(capsys)


def tvm_copy(backend_artifacts, copy_of):
    if "tvm" not in backend_artifacts:
        pytest.skip("the tvm extra is not installed")
    return copy_of(backend_artifacts["tvm"])


def _rewrite_index(path, change) -> None:
    index = json.loads((path / "tvm.json").read_text())
    change(index)
    (path / "tvm.json").write_text(json.dumps(index))
    manifest = read_manifest_json(path)
    reseal_manifest(path, manifest)
    write_manifest_json(path, manifest)


@pytest.mark.parametrize("library", ["../evil.so", "/tmp/evil.so", "a/../../evil.so", "..\\evil.so"])
def test_tvm_json_naming_a_library_outside_is_refused_before_any_load(library, backend_artifacts, copy_of, monkeypatch):
    path = tvm_copy(backend_artifacts, copy_of)
    _rewrite_index(path, lambda index: index["buckets"][0].update(library=library))
    import tvm

    loaded = []
    monkeypatch.setattr(tvm.runtime, "load_module", lambda *args, **kwargs: loaded.append(args))
    with pytest.raises(ArtifactError, match="tvm.json .*(outside the artifact folder|not a plain relative path)"):
        load(path)
    assert loaded == [], "a library was loaded before the index was checked"


def test_an_evil_library_beside_the_artifact_never_runs(backend_artifacts, copy_of, tmp_path):
    if not shutil.which("gcc"):
        pytest.skip("gcc is needed to build the test's shared library")
    path = tvm_copy(backend_artifacts, copy_of)
    marker = tmp_path / "constructor-ran"
    source = tmp_path / "evil.c"
    source.write_text(
        "#include <stdio.h>\n__attribute__((constructor)) static void evil(void) "
        f'{{ FILE *f = fopen("{marker}", "w"); if (f) fclose(f); }}\n'
    )
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(tmp_path / "evil.so"), str(source)], check=True)
    _rewrite_index(path, lambda index: index["buckets"][0].update(library="../evil.so"))
    with pytest.raises(ArtifactError):
        load(path)
    assert not marker.exists(), "the library's constructor ran"


def test_a_tvm_library_symlinked_outside_or_unlisted_is_refused(backend_artifacts, copy_of, tmp_path, monkeypatch):
    path = tvm_copy(backend_artifacts, copy_of)
    library = json.loads((path / "tvm.json").read_text())["buckets"][0]["library"]
    shutil.copyfile(path / library, tmp_path / "outside.so")
    (path / library).unlink()
    (path / library).symlink_to(tmp_path / "outside.so")  # same bytes, same hash
    import tvm

    loaded = []
    monkeypatch.setattr(tvm.runtime, "load_module", lambda *args, **kwargs: loaded.append(args))
    with pytest.raises(ArtifactError, match="outside the artifact folder"):
        load(path)
    assert loaded == []
    (path / library).unlink()
    shutil.copyfile(tmp_path / "outside.so", path / library)
    edit_manifest(path, lambda m: m["files"].pop(library), reseal=True)
    with pytest.raises(ArtifactError, match=f"does not list '{library}'.*the tvm backend opens it"):
        load(path)


def test_a_tvm_pad_value_outside_the_vocabulary_is_refused(backend_artifacts, copy_of):
    """Padding goes through the embedding gather like any id: a huge one crashed the process."""
    path = tvm_copy(backend_artifacts, copy_of)
    _rewrite_index(path, lambda index: index["pad_values"].update(input_ids=10**11))
    with pytest.raises(ArtifactError, match="pad value 100000000000 is not a valid value of input input_ids"):
        load(path)


PARAMS_DAMAGE = {
    "an object array": lambda a: a.update({next(iter(a)): np.array([{"a": 1}], dtype=object)}),
    "a missing weight": lambda a: a.pop(next(iter(a))),
    "strings": lambda a: a.update({next(iter(a)): np.array(["w"])}),
}


@pytest.mark.parametrize("damage", sorted(PARAMS_DAMAGE))
def test_malformed_tvm_params_are_one_error(damage, backend_artifacts, copy_of):
    path = tvm_copy(backend_artifacts, copy_of)
    _rewrite_npz(path / "tvm_params.npz", PARAMS_DAMAGE[damage])
    edit_manifest(path, lambda m: None, reseal=True)
    with pytest.raises(ArtifactError, match="tvm_params.npz"):
        load(path)


def test_bench_never_writes_through_links_in_reports(artifacts, copy_of, tmp_path, capsys):
    """reports/ is not hashed: links placed there (to a file, or the folder itself) are replaced or
    refused, never written through, and damaged reports do not stop the page."""
    art = copy_of(artifacts["sequence"])
    victim, victim_page = tmp_path / "victim.txt", tmp_path / "victim.html"
    victim.write_text("precious")
    victim_page.write_text("precious too")
    (art / "reports" / "benchmark.json").symlink_to(victim)
    (art / "reports" / "report.html").unlink()
    (art / "reports" / "report.html").symlink_to(victim_page)
    (art / "reports" / "damaged.json").write_text("[1, {")
    (art / "reports" / "odd.json").write_text("[1]")
    assert main(["bench", str(art), "--runs", "2", "--warmup", "1", "--batch", "1", "--seq", "8"]) == 0
    assert victim.read_text() == "precious" and victim_page.read_text() == "precious too"
    assert not (art / "reports" / "benchmark.json").is_symlink()
    assert json.loads((art / "reports" / "benchmark.json").read_text())["points"]
    page = (art / "reports" / "report.html").read_text()
    assert "<h2>Latency benchmark</h2>" in page and "could not be read (AttributeError)" in page
    assert "JSONDecodeError" in page  # damaged.json, shown as unreadable
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.rmtree(art / "reports")
    (art / "reports").symlink_to(elsewhere)
    assert main(["bench", str(art), "--runs", "2", "--warmup", "1", "--batch", "1", "--seq", "8"]) == 0
    assert "could not update the artifact's report" in capsys.readouterr().err and not list(elsewhere.iterdir())


def test_a_manifest_or_signature_that_is_a_link_is_refused(artifacts, copy_of, tmp_path):
    art = copy_of(artifacts["sequence"])
    elsewhere = tmp_path / "manifest-elsewhere.json"
    shutil.move(art / "manifest.json", elsewhere)
    (art / "manifest.json").symlink_to(elsewhere)
    with pytest.raises(ArtifactError, match="manifest.json is a symbolic link"):
        load(art)
    from edgekiln.runtime.signing import check_signature

    (art / "signature.json").symlink_to(elsewhere)
    with pytest.raises(ArtifactError, match="signature.json is a symbolic link"):
        check_signature(art, elsewhere.read_bytes(), [b"\0" * 32])


@pytest.mark.parametrize(("backend", "swapped"), [("onnxruntime", "model.onnx"), ("openvino", "model.bin")])
def test_a_model_swapped_after_the_check_is_not_what_runs(backend, swapped, backend_artifacts, copy_of, monkeypatch):
    """ONNX Runtime and OpenVINO load the bytes they hash: a file replaced between the check and the load
    is refused (OpenVINO read its IR by path after the check)."""
    from edgekiln.runtime import session as session_module

    if backend not in backend_artifacts:
        pytest.skip(f"{backend} is not installed")
    art = copy_of(backend_artifacts[backend])
    checked = session_module.check_artifact

    def check_then_swap(folder, manifest, **options):
        checked(folder, manifest, **options)
        data = bytearray((art / swapped).read_bytes())
        data[-1] ^= 1
        (art / swapped).write_bytes(bytes(data))

    monkeypatch.chdir(art.parent)  # a relative path, as a user types it (the bytes check once failed on one)
    assert load(art.name).run  # loads, unchanged
    monkeypatch.setattr(session_module, "check_artifact", check_then_swap)
    with pytest.raises(ArtifactError, match=f"{swapped} changed while the artifact was loading"):
        load(art.name)


def test_an_npz_that_would_allocate_more_than_it_holds_is_refused_first(tmp_path):
    """A header declaring 500M x 4 floats over a few bytes, and a member that expands a thousandfold."""
    import io
    import zipfile

    from edgekiln.runtime.npz import read_arrays

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (500_000_000, 4)})
    lying = tmp_path / "lying.npz"
    with zipfile.ZipFile(lying, "w") as archive:
        archive.writestr("0/output/y.npy", header.getvalue() + b"\0" * 64)  # magic, header, 64 bytes
    with pytest.raises(ArtifactError, match=r"declares shape \[500000000, 4\], more data than"):
        read_arrays(lying, "reference.npz")
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        buffer = io.BytesIO()
        np.save(buffer, np.zeros((100 << 20) // 4, np.float32))
        archive.writestr("0/output/y.npy", buffer.getvalue())
    with pytest.raises(ArtifactError, match="a decompression bomb"):
        read_arrays(bomb, "reference.npz")
