#!/usr/bin/env python3
"""TVM on a static QDQ int8 model (edgekiln's `--quantize static` ONNX Runtime artifact's model.onnx)
against TVM fp32 (same default CPU schedules) and ONNX Runtime fp32/int8: batch 1 x 128 tokens, one
thread, one process, interleaved rounds; outputs compared on the same seeded tokens.

    python benchmarks/tvm_int8.py FP32_ARTIFACT/model.onnx INT8_ARTIFACT/model.onnx
"""

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tvm  # noqa: E402
from tvm import relax  # noqa: E402

from edgekiln.compiler.tvm_build.build import build  # noqa: E402
from edgekiln.compiler.tvm_build.importer import import_fixed  # noqa: E402
from edgekiln.compiler.tvm_build.target import local_target  # noqa: E402
from edgekiln.targets import load_profile  # noqa: E402

prof = load_profile("x86-64-avx2")
target = local_target(prof)
rng = np.random.default_rng(0)
ids = rng.integers(1000, 20000, size=(1, 128)).astype(np.int64)
ids[0, 0] = 101
ids[0, -1] = 102
feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
models = {"fp32": sys.argv[1], "int8": sys.argv[2]}
runners, outs = {}, {}
for name, path in models.items():
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    f = {i.name: feeds[i.name] for i in s.get_inputs()}
    outs["ort-" + name] = s.run(None, f)[0]
    runners["ort-" + name] = lambda s=s, f=f: s.run(None, f)
    t = time.perf_counter()
    mod, params = import_fixed(Path(path), {k: list(v.shape) for k, v in f.items()})
    ex = build(mod, target)
    print(name, "TVM built in", round(time.perf_counter() - t, 1), "s", flush=True)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    args = [tvm.runtime.tensor(f[k]) for k in f] + [tvm.runtime.tensor(p) for p in params]
    out = vm["main"](*args)
    out = out[0] if not hasattr(out, "numpy") else out
    outs["tvm-" + name] = out.numpy()
    runners["tvm-" + name] = lambda vm=vm, args=args: vm["main"](*args)


def cos(a, b):
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    return float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))


ref = outs["ort-fp32"]
for k, v in outs.items():
    print(f"{k:10s} vs ort-fp32: max abs {np.abs(v - ref).max():.4g} cosine {cos(v, ref):.6f}")
print(
    f"tvm-int8 vs ort-int8: max abs {np.abs(outs['tvm-int8'] - outs['ort-int8']).max():.4g} cosine {cos(outs['tvm-int8'], outs['ort-int8']):.6f}"
)
times = {k: [] for k in runners}
for _round in range(8):
    for k, fn in runners.items():
        fn()
        t = time.perf_counter()
        for _ in range(5):
            fn()
        times[k].append((time.perf_counter() - t) / 5 * 1e3)
for k, v in times.items():
    print(f"{k:10s} p50 {np.median(v):8.2f} ms")
