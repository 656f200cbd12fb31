"""Tuning starts from the default CPU schedules (compiler/tvm_build/tuning_seed.py): each kernel's
default is measured and recorded once, and a build applies whichever record measured fastest, so a
tuned kernel can be the default but never a slower search result."""

from __future__ import annotations

import logging.config
import shutil

import numpy as np
import pytest

pytest.importorskip("tvm")

TARGET = {"kind": "llvm", "num-cores": 2, "mcpu": "haswell"}


def _mlp_module(tmp_path):
    """A two-matmul MLP imported, legalized and fused as tuning sees it, with its ONNX file."""
    import onnx
    import tvm
    from onnx import TensorProto, helper, numpy_helper
    from tvm import relax

    from edgekiln.compiler.tvm_build.cpu_rewrites import prepare_passes
    from edgekiln.compiler.tvm_build.importer import import_fixed

    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((64, 128)) * 0.1).astype(np.float32)
    w2 = (rng.standard_normal((128, 32)) * 0.1).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16, 64])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [16, 32])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    path = tmp_path / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    mod, params = import_fixed(path, {"x": [16, 64]})
    tvm_target = tvm.target.Target(TARGET)
    with tvm_target:
        lowered = tvm.transform.Sequential([*prepare_passes(TARGET), relax.get_pipeline("zero")])(mod)
    return path, mod, params, lowered, tvm_target


def _seed(lowered, tvm_target, database) -> int:
    from tvm.s_tir import meta_schedule as ms

    from edgekiln.compiler.tvm_build.tuning import build_candidate
    from edgekiln.compiler.tvm_build.tuning_seed import seed_defaults

    builder = ms.builder.LocalBuilder(max_workers=1, f_build=build_candidate)
    return seed_defaults(lowered, tvm_target, database, builder, ms.runner.LocalRunner())


def _records(database):
    from tvm.s_tir import meta_schedule as ms

    return ms.database.JSONDatabase(work_dir=str(database)).get_all_tuning_records()


@pytest.mark.timeout(600)
def test_defaults_are_measured_once_and_a_build_applies_them(tmp_path):
    import onnxruntime as ort
    import tvm
    from tvm import relax

    from edgekiln.compiler.tvm_build.build import build, cpu_lowered
    from edgekiln.compiler.tvm_build.cpu_schedules import default_schedules
    from edgekiln.compiler.tvm_build.importer import main_inputs

    path, mod, params, lowered, tvm_target = _mlp_module(tmp_path)
    database = tmp_path / "db"
    assert _seed(lowered, tvm_target, database) == 2, "both kernels' defaults measured and recorded"
    records = _records(database)
    assert len(records) == 2 and all(len(r.run_secs) >= 1 and float(r.run_secs[0]) > 0 for r in records)
    assert _seed(lowered, tvm_target, database) == 0, "a default already recorded is not measured again"

    applied = [0, 0]
    executable = build(mod, TARGET, tuned_database=database, applied=applied)
    assert applied == [2, 2], "every kernel scheduled from the database"
    with tvm_target:  # the database's schedules are the defaults, kernel for kernel
        from_db = cpu_lowered(mod, tvm_target, TARGET, database)
        defaults = default_schedules(cpu_lowered(mod, tvm_target, TARGET, None), tvm_target)
    for gvar, func in defaults.functions_items():
        if isinstance(func, tvm.tirx.PrimFunc):
            tvm.ir.assert_structural_equal(from_db[gvar.name_hint].body, func.body)

    x = np.random.default_rng(1).standard_normal((16, 64)).astype(np.float32)
    vm = relax.VirtualMachine(executable, tvm.cpu())
    feeds = {"x": x}
    out = vm["main"](*[tvm.runtime.tensor(a) for a in [feeds[n] for n in main_inputs(mod)] + params])
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose((out if hasattr(out, "numpy") else out[0]).numpy(), want, atol=1e-4, rtol=1e-4)


@pytest.mark.timeout(600)
def test_a_slower_record_of_the_same_kernel_loses_to_the_default(tmp_path):
    """A search result measured slower than the default (here: the unscheduled kernel, recorded with
    ten times the default's time) is not what the build applies; one measured faster is."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from edgekiln.compiler.tvm_build.build import cpu_lowered

    _, mod, _, lowered, tvm_target = _mlp_module(tmp_path)
    for factor, expect_default in ((10.0, True), (0.1, False)):
        database = tmp_path / f"db-{factor}"
        _seed(lowered, tvm_target, database)
        db = ms.database.JSONDatabase(work_dir=str(database))
        for record in list(db.get_all_tuning_records()):
            plain = tvm.s_tir.Schedule(record.workload.mod)  # loops looked up, nothing changed
            plain.get_loops(plain.get_child_blocks(plain.get_sblock("root"))[0])  # (an empty trace is not a record)
            seconds = [float(record.run_secs[0]) * factor]
            db.commit_tuning_record(
                ms.database.TuningRecord(plain.trace, record.workload, seconds, tvm_target, record.args_info)
            )
        with tvm_target:
            applied = cpu_lowered(mod, tvm_target, TARGET, database)
        kernels = [f for f in applied.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
        parallel = ["parallel" in f.script() for f in kernels]  # the defaults run the matmuls in parallel
        assert all(parallel) if expect_default else not any(parallel), (factor, parallel)


@pytest.mark.timeout(600)
def test_a_deadline_ends_tuning_at_the_first_batch_past_it(tmp_path):
    """MetaSchedule has no time budget; a run whose deadline passed while the defaults were seeded
    measures nothing more (it measured a batch per kernel, and before the round-robin scheduler, every
    kernel's), and keeps the seeded defaults."""
    import time

    pytest.importorskip("xgboost")
    from edgekiln.compiler.tvm_build.tuning import tune

    _, mod, _, _, _ = _mlp_module(tmp_path)
    earlier = tmp_path / "earlier"  # a run whose folder is deleted: MetaSchedule's log files lay there
    tune(mod, TARGET, earlier, 10_000, workers=1, deadline=time.monotonic())
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})  # closes every handler
    shutil.rmtree(earlier)
    orphan = logging.FileHandler(tmp_path / "gone" / "x.log", delay=True)  # a handler another run left
    logging.getLogger("tvm.s_tir.meta_schedule").addHandler(orphan)
    database = tmp_path / "db"
    measured = tune(mod, TARGET, database, 10_000, workers=1, deadline=time.monotonic())
    assert measured == 0, f"{measured} trials measured after the deadline"
    assert len(_records(database)) >= 2, "the defaults were recorded before the search"
