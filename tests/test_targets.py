from pathlib import Path

import pytest

from edgekiln.runtime.manifest import Precision
from edgekiln.targets import ProfileError, load_profile, parse_profile_file, profile_names
from edgekiln.targets.host import cpu_flags, detect_host
from edgekiln.targets.registry import builtin_profile_dir

REQUIRED = {"x86-64-avx2", "x86-64-avx512-vnni", "arm64-cortex-a72", "arm64-cortex-a76", "jetson-orin", "nvidia-cuda"}


def test_required_profiles_ship_and_validate():
    assert set(profile_names()) >= REQUIRED
    for name in profile_names():
        profile = load_profile(name)
        assert profile.name == name
        assert Precision.FP32 in profile.precisions
        assert profile.preferred_backends


def test_arm_profiles_are_aarch64_and_gpu_profiles_have_cuda():
    assert load_profile("arm64-cortex-a72").arch.value == "aarch64"
    assert load_profile("jetson-orin").accelerator.value == "cuda"
    assert load_profile("nvidia-cuda").accelerator.value == "cuda"
    assert "dotprod" in load_profile("arm64-cortex-a76").isa


def test_host_profile_describes_this_machine():
    host = load_profile("host")
    assert host.name == "host"
    assert host.cores >= 1 and host.threads == host.cores
    assert "onnxruntime" in host.preferred_backends


def test_unknown_target_names_the_choices():
    with pytest.raises(ProfileError, match="unknown target 'raspberry'.*arm64-cortex-a72"):
        load_profile("raspberry")


def _write(tmp_path: Path, extra: str) -> Path:
    text = (builtin_profile_dir() / "x86-64-avx2.toml").read_text()
    path = tmp_path / "custom.toml"
    path.write_text(extra + text)  # top-level keys go before the [tvm_target] table
    return path


def test_unknown_profile_key_is_rejected(tmp_path):
    with pytest.raises(ProfileError, match="unknown key `vector_width`"):
        parse_profile_file(_write(tmp_path, "vector_width = 256\n"))


def test_bad_profile_values_are_rejected(tmp_path):
    path = tmp_path / "bad.toml"
    text = _write(tmp_path, "").read_text().replace('arch = "x86_64"', 'arch = "riscv"')
    path.write_text(text)
    with pytest.raises(ProfileError, match="`arch`"):
        parse_profile_file(path)
    path.write_text(text.replace("threads = 4", "threads = 64").replace('"riscv"', '"x86_64"'))
    with pytest.raises(ProfileError, match="exceeds cores"):
        parse_profile_file(path)


def test_profile_from_a_toml_path(tmp_path):
    path = _write(tmp_path, "")
    path.write_text(path.read_text().replace('name = "x86-64-avx2"', 'name = "my-box"'))
    assert load_profile(str(path)).name == "my-box"
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile(str(tmp_path / "missing.toml"))


def test_a_profile_file_may_not_take_a_shipped_name_nor_contradict_its_arch(tmp_path):
    """An artifact records the profile's name (a custom A53 named arm64-cortex-a72 claimed that board); a
    triple for another arch failed at link time, after the whole build."""
    with pytest.raises(ProfileError, match="takes the name 'x86-64-avx2' of a shipped profile"):
        load_profile(str(_write(tmp_path, "")))
    assert load_profile(str(builtin_profile_dir() / "x86-64-avx2.toml")).name == "x86-64-avx2"  # the shipped file
    text = (
        (builtin_profile_dir() / "arm64-cortex-a72.toml")
        .read_text()
        .replace('name = "arm64-cortex-a72"', 'name = "odd-board"')
    )
    path = tmp_path / "odd.toml"
    path.write_text(text.replace("aarch64-linux-gnu", "x86_64-linux-gnu"))
    with pytest.raises(ProfileError, match="mtriple 'x86_64-linux-gnu' is not for the profile's arch aarch64"):
        load_profile(str(path))


def test_cpu_flags_parse_x86_and_arm_cpuinfo():
    assert {"avx2", "fma"} <= cpu_flags("processor: 0\nflags\t\t: fpu avx2 fma\n")
    assert "asimddp" in cpu_flags("Features\t: fp asimd asimddp\n")


def test_a_tvm_library_for_features_this_cpu_lacks_is_refused_before_it_loads(monkeypatch):
    """An AVX-512 build on an AVX2 machine stopped at SIGILL with no message."""
    from edgekiln.runtime.backends import tvm as tvm_backend
    from edgekiln.runtime.backends.tvm_index import Bucket, TvmIndex
    from edgekiln.runtime.errors import BackendUnavailableError

    bucket = Bucket(batch=1, sequence=None, library="b.so", params=())
    index = TvmIndex(
        arch="x86_64", isa=("avx2", "avx512f", "avx512_vnni"), device="cpu", target={}, inputs=("x",), buckets=(bucket,)
    )
    monkeypatch.setattr(tvm_backend, "x86_isa", lambda: {"sse4.2", "avx", "avx2", "fma"})
    with pytest.raises(BackendUnavailableError, match="uses avx512_vnni, avx512f, which this CPU lacks"):
        tvm_backend._check_isa(index)
    monkeypatch.setattr(tvm_backend, "x86_isa", lambda: {"avx2", "avx512f", "avx512_vnni", "amx_tile"})
    tvm_backend._check_isa(index)  # has them all
    monkeypatch.setattr(tvm_backend, "x86_isa", lambda: None)  # unknown (no /proc/cpuinfo): not checked
    tvm_backend._check_isa(index)


def test_this_machine_reads_as_having_the_features_its_host_profile_records():
    from edgekiln.runtime.cpus import x86_isa

    here = x86_isa()
    if here is None:
        pytest.skip("not an x86-64 machine with /proc/cpuinfo")
    assert set(detect_host().isa) <= here and "sse4.2" in here


def test_bucket_sizes_are_bounded_as_an_artifact_index_admits_them(tmp_path):
    from edgekiln.compiler.errors import CompileError
    from edgekiln.compiler.tvm_build.shapes import check_buckets
    from edgekiln.runtime.backends.tvm_index import Bucket

    path = _write(tmp_path, "batch_buckets = [1, 1000000000000]\n")
    path.write_text(path.read_text().replace('name = "x86-64-avx2"', 'name = "big"'))
    with pytest.raises(ProfileError, match="batch_buckets must be increasing positive sizes up to 65536"):
        load_profile(str(path))
    with pytest.raises(CompileError, match="up to 1048576"):
        check_buckets((32, 1 << 21))
    with pytest.raises(ValueError, match="less than or equal to 65536"):  # a forged tvm.json: refused, not allocated
        Bucket(batch=10**12, library="b.so", params=())


def test_an_mcpu_llvm_does_not_know_is_refused_before_a_tvm_build():
    pytest.importorskip("tvm")
    from edgekiln.compiler.errors import CompileError
    from edgekiln.compiler.tvm_build.target import check_cpu_name

    a72 = load_profile("arm64-cortex-a72")
    check_cpu_name(a72)  # a CPU LLVM knows
    typo = a72.model_copy(update={"tvm_target": a72.tvm_target.model_copy(update={"mcpu": "cortex-a999"})})
    with pytest.raises(CompileError, match="mcpu 'cortex-a999' is not a CPU LLVM knows for aarch64-linux-gnu"):
        check_cpu_name(typo)


def test_isa_names_are_checked_when_a_profile_is_read(tmp_path):
    """A misspelt feature (cpuinfo's sse4_2, avx512vnni) made every TVM artifact refuse to load."""
    path = _write(tmp_path, "")
    text = path.read_text().replace('name = "x86-64-avx2"', 'name = "typo"')
    path.write_text(text.replace('"sse4.2"', '"avx512vnni"'))
    with pytest.raises(ProfileError, match=r"unknown x86_64 isa names \['avx512vnni'\]; known: sse4.2"):
        load_profile(str(path))
