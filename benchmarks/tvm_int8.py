#!/usr/bin/env python3
"""TVM on a static QDQ int8 model (edgekiln's `--quantize static` ONNX Runtime artifact's model.onnx)
against TVM fp32 (same default CPU schedules) and ONNX Runtime fp32/int8: batch 1 x 128 tokens, one
thread, one process, interleaved rounds; outputs compared on the same seeded tokens.

    python benchmarks/tvm_int8.py FP32_ARTIFACT/model.onnx INT8_ARTIFACT/model.onnx [SENTENCES.tsv]

With SENTENCES.tsv (a `sentence` column first, e.g. SST-2 validation), the first 100 sentences, each
tokenized by the fp32 artifact and padded to 128, are embedded (mean of the real tokens' last hidden
states) by every int8 runner and compared with ONNX Runtime fp32 by cosine: int8 against the float model.
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
runners, outs, sessions, machines = {}, {}, {}, {}
for name, path in models.items():
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    f = {i.name: feeds[i.name] for i in s.get_inputs()}
    outs["ort-" + name] = s.run(None, f)[0]
    sessions[name] = s
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
    machines[name] = (vm, [tvm.runtime.tensor(p) for p in params], list(f))


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


def embed_tvm(name: str, feeds: dict) -> np.ndarray:
    vm, params, order = machines[name]
    out = vm["main"](*[tvm.runtime.tensor(feeds[k]) for k in order], *params)
    return (out[0] if not hasattr(out, "numpy") else out).numpy()


def pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float32)
    return (hidden * weights).sum(axis=1) / weights.sum(axis=1)


if len(sys.argv) > 3:
    from edgekiln.runtime import load

    encoder = load(Path(sys.argv[1]).parent).encoder
    lines = Path(sys.argv[3]).read_text().splitlines()[1:101]
    cosines: dict[str, list[float]] = {"ort-int8": [], "tvm-int8": [], "tvm-fp32": []}
    for line in lines:
        encoded, _ = encoder.encode([line.split("\t")[0]])
        length = min(encoded["input_ids"].shape[1], 128)
        padded = {k: np.zeros((1, 128), np.int64) for k in feeds}
        for k in padded:
            if k in encoded:
                padded[k][:, :length] = encoded[k][:, :length]
        mask = padded["attention_mask"]
        feed = {i.name: padded[i.name] for i in sessions["fp32"].get_inputs()}
        reference = pooled(sessions["fp32"].run(None, feed)[0], mask)
        found = {
            "ort-int8": pooled(sessions["int8"].run(None, feed)[0], mask),
            "tvm-int8": pooled(embed_tvm("int8", feed), mask),
            "tvm-fp32": pooled(embed_tvm("fp32", feed), mask),
        }
        for k, v in found.items():
            cosines[k].append(cos(v, reference))
    for k, v in cosines.items():
        print(
            f"{k:10s} sentence embedding vs ort-fp32 on {len(v)} sentences: median cosine {np.median(v):.6f}, min {min(v):.6f}"
        )
