"""CUDA kernels compiled at build time (compiler/tvm_build/cuda.py) and handed to TVM's runtime at
load (runtime/backends/tvm_cuda.py): TVM 0.27 stores CUDA source in the library and compiles it on
the device unless the loader answers with machine code."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

pytest.importorskip("tvm")

from edgekiln.compiler.tvm_build import cuda  # noqa: E402
from edgekiln.runtime import ArtifactError  # noqa: E402
from edgekiln.runtime.backends import tvm_cuda  # noqa: E402
from edgekiln.runtime.backends.tvm_index import Bucket, CudaKernels, TvmIndex  # noqa: E402

needs_nvcc = pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc (the CUDA toolkit)")


def _index(kernels: tuple[CudaKernels, ...]) -> TvmIndex:
    bucket = Bucket(batch=1, library="tvm_b1.so", params=(), kernels=kernels)
    return TvmIndex(arch="x86_64", device="cuda", target={"kind": "cuda"}, inputs=("x",), buckets=(bucket,))


def test_gencode_flags_carry_machine_code_and_ptx_for_the_newest():
    assert cuda.gencode_flags("sm_87") == [
        "-gencode", "arch=compute_87,code=sm_87", "-gencode", "arch=compute_87,code=compute_87",
    ]  # fmt: skip
    flags = cuda.gencode_flags(None)
    assert [f"arch=compute_{a[3:]},code={a}" for a in cuda.PORTABLE] == flags[1:-2:2]
    assert flags[-1] == "arch=compute_90,code=compute_90"


def test_the_loader_answers_with_the_stored_machine_code(tmp_path: Path):
    pytest.importorskip("tvm_ffi")
    source = 'extern "C" __global__ void k() {}\n'
    (tmp_path / "k.fatbin").write_bytes(b"machine code")
    tvm_cuda.provide(tmp_path, _index((CudaKernels(source_sha256=tvm_cuda.source_key(source), file="k.fatbin"),)))
    import tvm_ffi

    compile_kernels = tvm_ffi.get_global_func(tvm_cuda.CALLBACK)
    assert bytes(compile_kernels(source)) == b"machine code"
    with pytest.raises(Exception, match="no compiled kernels for CUDA source"):
        compile_kernels(source + "// another module\n")


def test_an_artifact_without_machine_code_is_refused_with_the_fix(tmp_path: Path):
    with pytest.raises(ArtifactError, match="holds no compiled kernels") as caught:
        tvm_cuda.provide(tmp_path, _index(()))
    assert "recompile" in caught.value.hint


def test_a_kernel_file_outside_the_artifact_is_refused():
    with pytest.raises(ValueError):
        CudaKernels(source_sha256="0" * 64, file="../elsewhere.fatbin")


@needs_nvcc
def test_build_compiles_the_source_the_library_stores(tmp_path: Path):
    import tvm
    from tvm.script import relax as R

    from edgekiln.compiler.tvm_build import build

    @tvm.script.ir_module
    class Module:
        @R.function
        def main(x: R.Tensor((4, 8), "float32")):
            with R.dataflow():
                y = R.nn.relu(R.add(x, x))
                R.output(y)
            return y

    executable = build.build(Module, {"kind": "cuda", "host": {"kind": "llvm"}})
    build.export(executable, tmp_path / "lib.so", "x86_64")
    (kernels,) = cuda.write_kernels(executable, tmp_path, "lib", "sm_80")
    assert (tmp_path / kernels.file).read_bytes()[:4] == cuda.FATBIN_MAGIC
    (source,) = cuda.kernel_sources(executable)
    assert kernels.source_sha256 == hashlib.sha256(source.encode()).hexdigest()
    assert source.encode() in (tmp_path / "lib.so").read_bytes()  # what TVM hands the loader


def test_nvcc_errors_are_one_line_with_the_fix(monkeypatch):
    monkeypatch.setattr(cuda.shutil, "which", lambda name: None)
    with pytest.raises(Exception, match="needs nvcc") as caught:
        cuda.require_nvcc()
    assert "CUDA toolkit" in caught.value.hint


@needs_nvcc
def test_source_nvcc_rejects_is_one_error_naming_nvcc():
    with pytest.raises(Exception, match="nvcc could not compile the CUDA kernels: .*error"):
        cuda.nvcc_fatbin("this is not CUDA", "sm_80")


def test_a_kernel_a_dlight_rule_cannot_take_gets_the_next_rule():
    """A batched matrix product over a reduction of length 1 (MobileViT's attention): dlight's GEMV rule
    asserts on it, which aborted the whole CUDA build; the next rule now schedules it. No nvcc needed:
    TVM 0.27 builds CUDA source."""
    import tvm
    from tvm.script import relax as R

    from edgekiln.compiler.tvm_build import build

    @tvm.script.ir_module
    class Module:
        @R.function
        def main(a: R.Tensor((4, 4, 1, 1), "float32"), b: R.Tensor((4, 4, 1, 8), "float32")):
            with R.dataflow():
                y = R.matmul(a, b)
                R.output(y)
            return y

    executable = build.build(Module, {"kind": "cuda", "host": {"kind": "llvm"}})
    (source,) = cuda.kernel_sources(executable)
    assert "__global__" in source
