#!/usr/bin/env bash
# The device half of the GPU check: run from the repository root on a machine with an NVIDIA GPU,
# after `python benchmarks/gpu_prepare.py --out .gpu` and `benchmarks/gpu_bundle.sh` here.
# Installs the carried wheels (edgekiln, pydantic, TVM's FFI) and TVM's runtime (no compiler) under
# /tmp/site, then runs benchmarks/gpu_check.py. OUT: where the JSON goes (default .gpu).
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl
tar xJf .gpu/tvm-runtime.tar.xz -C /tmp/site
if [ -f .gpu/families.tar.xz ]; then tar xJf .gpu/families.tar.xz -C .gpu; fi
export PYTHONPATH=/tmp/site TVM_USE_RUNTIME_LIB=1 PYTHONUNBUFFERED=1
if ! ldconfig -p | grep -q 'libcudart.so.13 '; then  # TVM's CUDA runtime links the CUDA 13 runtime
  cudart=$(find /usr/local /opt -name 'libcudart.so.13' 2>/dev/null | head -1)
  [ -n "$cudart" ] && export LD_LIBRARY_PATH="$(dirname "$cudart")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
# ONLY: some of the parts (text image vit families), default all
python3 benchmarks/gpu_check.py --folder .gpu --runs "${RUNS:-300}" --json "${OUT:-.gpu}/gpu_check.json" ${ONLY:+--only $ONLY}
