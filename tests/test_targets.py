from pathlib import Path

import pytest

from edgekiln.runtime.manifest import Precision
from edgekiln.targets import ProfileError, load_profile, parse_profile_file, profile_names
from edgekiln.targets.host import cpu_flags
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
    assert load_profile(str(_write(tmp_path, ""))).name == "x86-64-avx2"
    with pytest.raises(ProfileError, match="does not exist"):
        load_profile(str(tmp_path / "missing.toml"))


def test_cpu_flags_parse_x86_and_arm_cpuinfo():
    assert {"avx2", "fma"} <= cpu_flags("processor: 0\nflags\t\t: fpu avx2 fma\n")
    assert "asimddp" in cpu_flags("Features\t: fp asimd asimddp\n")
