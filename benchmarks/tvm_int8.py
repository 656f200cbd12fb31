#!/usr/bin/env python3
"""TVM on a static QDQ int8 model (edgekiln's `--quantize static` ONNX Runtime artifact's model.onnx)
against TVM fp32 (same default CPU schedules) and ONNX Runtime fp32/int8: batch 1 x 128 tokens, one
thread, each runner in its own process, interleaved rounds (edgekiln.runtime.interleave); outputs
compared on the same seeded tokens.

    python benchmarks/tvm_int8.py FP32_ARTIFACT/model.onnx INT8_ARTIFACT/model.onnx [SENTENCES.tsv] [PROFILE]

PROFILE (default x86-64-avx512-vnni) is the target profile both TVM builds use. With SENTENCES.tsv
(a `sentence` column first, e.g. SST-2 validation), the first 100 sentences, each tokenized by the
fp32 artifact and padded to 128, are embedded (mean of the real tokens' last hidden states) by every
int8 runner and compared with ONNX Runtime fp32 by cosine: int8 against the float model.
"""

import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")
import numpy as np  # noqa: E402


def runner(name: str, spec):
    """interleave's factory: a callable running one 1 x 128 call of `spec` in this process."""
    if spec[0] == "ort":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        session = ort.InferenceSession(spec[1], so, providers=["CPUExecutionProvider"])
        return lambda feeds: session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})
    import tvm
    from tvm import relax

    _, library, weights, order = spec
    vm = relax.VirtualMachine(tvm.runtime.load_module(library), tvm.cpu())
    stored = np.load(weights)
    params = [tvm.runtime.tensor(stored[f"p{i}"]) for i in range(len(stored.files))]
    return lambda feeds: vm["main"](*[tvm.runtime.tensor(feeds[k]) for k in order], *params)


def cos(a, b):
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    return float((a * b).sum() / np.linalg.norm(a) / np.linalg.norm(b))


def pooled(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float32)
    return (hidden * weights).sum(axis=1) / weights.sum(axis=1)


def build_tvm(path: str, feeds: dict, target: dict, folder: Path, name: str):
    """(spec for `runner`, kernels per default rule) of the model built at the feeds' shapes."""
    from edgekiln.compiler.tvm_build.build import build
    from edgekiln.compiler.tvm_build.importer import import_fixed, main_inputs

    t = time.perf_counter()
    mod, params = import_fixed(Path(path), {k: list(v.shape) for k, v in feeds.items()})
    rules: dict[str, int] = {}
    executable = build(mod, target, defaults=rules)
    print(f"{name} TVM built in {time.perf_counter() - t:.1f} s; default schedules: {rules}", flush=True)
    library, weights = folder / f"{name}.so", folder / f"{name}.npz"
    executable.export_library(str(library))
    np.savez(weights, **{f"p{i}": p for i, p in enumerate(params)})
    return ("tvm", str(library), str(weights), list(main_inputs(mod)))


def first(out):
    out = out[0] if isinstance(out, (list, tuple)) or not hasattr(out, "numpy") else out
    return out.numpy() if hasattr(out, "numpy") else np.asarray(out)


def main() -> None:
    from edgekiln.compiler.tvm_build.target import local_target
    from edgekiln.runtime.interleave import measure
    from edgekiln.targets import load_profile

    profile = sys.argv[4] if len(sys.argv) > 4 else "x86-64-avx512-vnni"
    target = local_target(load_profile(profile))
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 20000, size=(1, 128)).astype(np.int64)
    ids[0, 0], ids[0, -1] = 101, 102
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    folder = Path(tempfile.mkdtemp(prefix="tvm-int8-"))
    specs = {}
    for name, path in {"fp32": sys.argv[1], "int8": sys.argv[2]}.items():
        specs["ort-" + name] = ("ort", path)
        specs["tvm-" + name] = build_tvm(path, feeds, target, folder, name)
    calls = {name: runner(name, spec) for name, spec in specs.items()}
    outs = {name: first(call(feeds)) for name, call in calls.items()}
    ref = outs["ort-fp32"]
    for k, v in outs.items():
        print(f"{k:10s} vs ort-fp32: max abs {np.abs(v - ref).max():.4g} cosine {cos(v, ref):.6f}")
    tvm8, ort8 = outs["tvm-int8"], outs["ort-int8"]
    print(f"tvm-int8 vs ort-int8: max abs {np.abs(tvm8 - ort8).max():.4g} cosine {cos(tvm8, ort8):.6f}")
    times = measure(runner, specs, feeds, rounds=8, per_round=5)
    for k, v in times.items():
        print(f"{k:10s} p50 {np.median(v):8.2f} ms")
    if len(sys.argv) > 3:
        sentences(sys.argv[1], Path(sys.argv[3]), calls, feeds)


def sentences(fp32_path: str, tsv: Path, calls: dict, feeds: dict) -> None:
    from edgekiln.runtime import load

    encoder = load(Path(fp32_path).parent).encoder
    cosines: dict[str, list[float]] = {"ort-int8": [], "tvm-int8": [], "tvm-fp32": []}
    for line in tsv.read_text().splitlines()[1:101]:
        encoded, _ = encoder.encode([line.split("\t")[0]])
        length = min(encoded["input_ids"].shape[1], 128)
        padded = {k: np.zeros((1, 128), np.int64) for k in feeds}
        for k in padded:
            if k in encoded:
                padded[k][:, :length] = encoded[k][:, :length]
        mask = padded["attention_mask"]
        reference = pooled(first(calls["ort-fp32"](padded)), mask)
        for k in cosines:
            cosines[k].append(cos(pooled(first(calls[k](padded)), mask), reference))
    for k, v in cosines.items():
        print(
            f"{k:10s} sentence embedding vs ort-fp32 on {len(v)} sentences: median cosine {np.median(v):.6f}, min {min(v):.6f}"
        )


if __name__ == "__main__":
    main()
