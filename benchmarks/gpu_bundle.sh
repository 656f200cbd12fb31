#!/usr/bin/env bash
# What benchmarks/gpu_run.sh installs on the GPU machine, gathered into .gpu/ (git-ignored there):
# edgekiln's wheel, the wheels it needs for the device's Python (3.12 by default), and TVM's runtime
# libraries and Python package without its 260 MB compiler library (TVM_USE_RUNTIME_LIB=1 loads it).
set -euo pipefail
PY=${PY:-3.12}
venv=${VENV:-.venv}
rm -rf .gpu/whl && mkdir -p .gpu/whl
"$venv/bin/pip" wheel -q --no-deps --no-build-isolation -w .gpu/whl .
for req in pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
    typing_extensions==4.16.0 apache-tvm-ffi==0.1.14.post1; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .gpu/whl "$req"
done
site=$("$venv/bin/python" -c "import tvm, pathlib; print(pathlib.Path(tvm.__file__).parent.parent)")
tar cJf .gpu/tvm-runtime.tar.xz -C "$site" --exclude tvm/lib/libtvm_compiler.so --exclude tvm/src \
  --exclude tvm/include --exclude __pycache__ tvm
# the image families' 13 artifacts are mostly code (libraries, fatbins): 63 MB, 12 MB compressed
[ -d .gpu/families ] && tar cJf .gpu/families.tar.xz -C .gpu families
du -sh .gpu/whl .gpu/tvm-runtime.tar.xz .gpu/*.tar.xz
