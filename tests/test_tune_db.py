"""TVM tuning databases: applied by untuned compiles, carried between machines by `edgekiln tune-db`."""

from __future__ import annotations

import json
import platform
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("tvm")

from edgekiln.cli.main import main  # noqa: E402
from edgekiln.compiler.errors import CompileError  # noqa: E402
from edgekiln.compiler.passes.lower_tvm_setup import _database  # noqa: E402
from edgekiln.compiler.tvm_build.tuning import tune_for_minutes  # noqa: E402
from edgekiln.compiler.tvm_build.tuning_db import (  # noqa: E402
    RECORDS,
    WORKLOADS,
    TuneDbFile,
    export_database,
    fingerprint,
    merge,
    parse_export,
    tvm_version,
)

TARGET = {"kind": "llvm", "num-cores": 2}
ATOL = 1e-4


def _record(workload: int, seconds: float) -> list:
    return [workload, [[[["GetSBlock", [], ["matmul", "main"], ["b0"]]], []], [seconds], TARGET, [["TENSOR"]]]]


def _write_db(folder, workloads, records) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / WORKLOADS).write_text("".join(json.dumps(w) + "\n" for w in workloads))
    (folder / RECORDS).write_text("".join(json.dumps(r) + "\n" for r in records))


def _lines(path) -> list:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_export_reindexes_and_import_merges_without_duplicates(tmp_path):
    source = tmp_path / "source"
    # workload 0 has no record: the export leaves it out, so workload 1 becomes 0
    _write_db(source, [["1", "unused"], ["2", "mod-a"], ["3", "mod-b"]], [_record(1, 1e-5), _record(2, 2e-5)])
    exported = export_database(source, "x86-64-avx2", TARGET)
    assert exported.workloads == [("2", "mod-a"), ("3", "mod-b")]
    assert [index for index, _ in exported.records] == [0, 1]
    assert exported.tvm == tvm_version()

    here = tmp_path / "here"  # holds mod-b (at another line) with its own record
    _write_db(here, [["9", "mod-z"], ["3", "mod-b"]], [_record(1, 5e-5)])
    text = exported.model_dump_json()
    assert merge(here, parse_export(text, "x.json")) == (2, 3)
    workloads, records = _lines(here / WORKLOADS), _lines(here / RECORDS)
    assert workloads == [["9", "mod-z"], ["3", "mod-b"], ["2", "mod-a"]]
    assert [(r[0], r[1][1]) for r in records] == [(1, [5e-5]), (2, [1e-5]), (1, [2e-5])]
    before = fingerprint(here)
    assert merge(here, parse_export(text, "x.json")) == (0, 3), "importing twice adds nothing"
    assert fingerprint(here) == before
    assert not [p for p in here.iterdir() if p.name.endswith(".tmp")], "no temporary file is left behind"


def test_exporting_an_empty_database_is_one_clear_error(tmp_path):
    with pytest.raises(CompileError, match="holds no records.*--tune-trials"):
        export_database(tmp_path / "absent", "x86-64-avx2", TARGET)


def test_records_tuned_on_another_kind_of_processor_are_not_imported(tmp_path, capsys):
    _write_db(tmp_path / "db", [["2", "mod-a"]], [_record(0, 1e-5)])
    x86 = {"kind": "llvm", "num-cores": 2, "mcpu": "haswell", "mtriple": "x86_64-linux-gnu"}
    exported = tmp_path / "x86.json"
    exported.write_text(export_database(tmp_path / "db", "x86-64-avx2", x86).model_dump_json())
    cache = str(tmp_path / "cache")
    assert main(["tune-db", "import", str(exported), "--target", "arm64-cortex-a72", "--cache-dir", cache]) == 2
    err = capsys.readouterr().err
    assert "was tuned for llvm x86_64, and arm64-cortex-a72 compiles for llvm aarch64" in err, err
    assert not (tmp_path / "cache" / "tvm-tuning").exists() or not any((tmp_path / "cache" / "tvm-tuning").iterdir())
    if platform.machine() == "x86_64":  # host's target names no triple: this machine's arch is meant
        assert main(["tune-db", "import", str(exported), "--target", "host", "--cache-dir", cache]) == 0
        assert "imported 1 new tuning records for host" in capsys.readouterr().out


def test_a_file_from_another_tvm_version_or_malformed_is_refused(tmp_path):
    _write_db(tmp_path, [["2", "mod-a"]], [_record(0, 1e-5)])
    good = json.loads(export_database(tmp_path, "x86-64-avx2", TARGET).model_dump_json())
    with pytest.raises(CompileError, match="tuned with TVM 0.1.0, this machine has TVM"):
        parse_export(json.dumps(good | {"tvm": "0.1.0"}), "old.json")
    cases = [
        ("not json {", "not JSON"),
        (json.dumps(good | {"records": [[5, good["records"][0][1]]]}), "refers to workload 5"),
        (json.dumps(good | {"format": "pickle"}), "format"),
        (json.dumps({k: v for k, v in good.items() if k != "target"}), "target"),
        (json.dumps([1, 2]), "not a valid tuning database export"),
    ]
    for text, message in cases:
        with pytest.raises(CompileError, match=message):
            parse_export(text, "bad.json")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(field=st.sampled_from(sorted(TuneDbFile.model_fields)), value=_JSON, raw=st.binary(max_size=40))
def test_any_damaged_export_is_refused_with_one_error(field, value, raw):
    good = {
        "format": "edgekiln-tune-db",
        "format_version": 1,
        "tvm": tvm_version(),
        "profile": "x86-64-avx2",
        "target": TARGET,
        "workloads": [["2", "mod-a"]],
        "records": [_record(0, 1e-5)],
    }
    for text in (json.dumps(good | {field: value}), raw.decode("latin-1")):
        try:
            parsed = parse_export(text, "f.json")
        except CompileError as exc:
            assert "\n" not in str(exc)
        else:
            assert all(0 <= index < len(parsed.workloads) for index, _ in parsed.records)


def test_the_cache_key_names_the_records_an_untuned_build_applies(tmp_path):
    from edgekiln.compiler.tvm_build.tuning import database_dir

    assert _database(tmp_path, TARGET, False) == (None, None), "no database: the build is TVM's default lowering"
    folder = database_dir(tmp_path, TARGET)
    _write_db(folder, [["2", "mod-a"]], [_record(0, 1e-5)])
    first = _database(tmp_path, TARGET, False)
    assert first == (folder, fingerprint(folder)) and first[1] is not None
    merge(folder, export_database(folder, "p", TARGET).model_copy(update={"records": [(0, _record(0, 3e-5)[1])]}))
    assert _database(tmp_path, TARGET, False)[1] not in (None, first[1]), "new records: a new cache key"
    assert _database(tmp_path, TARGET, True) == (folder, None), "a tuned build keys on its trials"
    assert _database(tmp_path, {"kind": "cuda", "host": TARGET}, False) == (None, None)


def test_a_minutes_budget_tunes_every_bucket_in_rounds_until_it_is_spent():
    now = [0.0]
    calls = []

    def run_round(mod, deadline) -> int:  # each bucket's round takes 50 s here, up to the deadline
        calls.append((mod, deadline))
        now[0] = min(now[0] + 50, deadline)
        return 32

    measured, rounds = tune_for_minutes(["b32", "b64"], 3, run_round, clock=lambda: now[0])
    assert calls == [("b32", 180), ("b64", 180), ("b32", 180), ("b64", 180)], "each run gets the deadline"
    assert (measured, rounds) == (128, 2) and now[0] == 180
    calls.clear()
    exhausted = tune_for_minutes(["b32"], 60, lambda mod, deadline: calls.append(mod) or 0, clock=lambda: 0.0)
    assert exhausted == (0, 1) and calls == ["b32"], "a round that measures nothing ends the search"


def test_tvm_options_take_one_tuning_budget():
    from edgekiln.compiler.passes.lower_tvm_setup import TvmOptions

    assert TvmOptions(tune_minutes=1.5).tune_minutes == 1.5
    for options, message in [
        (dict(tune_trials=8, tune_minutes=2), "two budgets"),
        (dict(tune_minutes=-1), "number of minutes >= 0"),
        (dict(tune_minutes="soon"), "number of minutes >= 0"),
    ]:
        with pytest.raises(CompileError, match=message):
            TvmOptions(**options)


def _mlp(path, hidden: int) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(hidden)
    w1 = rng.standard_normal((16, hidden)).astype(np.float32) * 0.3
    w2 = rng.standard_normal((hidden, 4)).astype(np.float32) * 0.3
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w1"], ["h"]),
            helper.make_node("Relu", ["h"], ["r"]),
            helper.make_node("MatMul", ["r", "w2"], ["y"]),
        ],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def _compile(model, out, cache, trials: int):
    from edgekiln.compiler import Recipe, compile

    recipe = Recipe.from_flags(backend="tvm", tune_trials=trials, cache_dir=str(cache))
    result = compile(model, "x86-64-avx2", out, recipe)
    return result.path, json.loads((result.path / "reports" / "lower_tvm.json").read_text())["details"]


def _matches_onnxruntime(artifact, model) -> None:
    import onnxruntime as ort

    from edgekiln.runtime import load

    x = np.random.default_rng(5).standard_normal((1, 16)).astype(np.float32)
    want = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(load(artifact).run({"x": x})["y"], want, atol=ATOL)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_tuned_records_exported_imported_and_applied_by_an_untuned_compile(tmp_path, capsys):
    pytest.importorskip("xgboost")
    model, other = tmp_path / "mlp.onnx", tmp_path / "other.onnx"
    _mlp(model, 32)
    _mlp(other, 24)  # other shapes: kernels the database has no record for
    _, tuned = _compile(model, tmp_path / "tuned", tmp_path / "cache-a", trials=2)
    assert tuned["tune_trials"] >= 2 and tuned["tuning_database"]["records"] >= 1  # trials measured
    assert tuned["tuning_database"]["kernels_from_database"] >= 1

    exported = tmp_path / "mlp-tuning.json"
    assert (
        main(
            [
                "tune-db",
                "export",
                "--target",
                "x86-64-avx2",
                "-o",
                str(exported),
                "--cache-dir",
                str(tmp_path / "cache-a"),
            ]
        )
        == 0
    )
    assert main(["tune-db", "import", str(exported), "--cache-dir", str(tmp_path / "cache-b")]) == 0
    assert main(["tune-db", "import", str(exported), "--cache-dir", str(tmp_path / "cache-b")]) == 0
    assert main(["tune-db", "show", "--cache-dir", str(tmp_path / "cache-b")]) == 0
    out = capsys.readouterr().out
    assert "imported 0 new tuning records" in out, "the second import adds nothing"
    records = len(json.loads(exported.read_text())["records"])
    # the profiles whose compiles use that database (host too, where this CPU compiles like x86-64-avx2)
    assert re.search(rf"{records} records  for (host, )?x86-64-avx2;", out), out

    artifact, imported = _compile(model, tmp_path / "imported", tmp_path / "cache-b", trials=0)
    assert imported["tune_trials"] == 0
    assert imported["tuning_database"]["records"] == records
    assert imported["tuning_database"]["kernels_from_database"] == tuned["tuning_database"]["kernels_from_database"]
    _matches_onnxruntime(artifact, model)

    artifact, unrelated = _compile(other, tmp_path / "other", tmp_path / "cache-b", trials=0)
    assert unrelated["tuning_database"]["kernels_from_database"] == 0, "no record fits: default lowering"
    _matches_onnxruntime(artifact, other)

    artifact, untuned = _compile(model, tmp_path / "untuned", tmp_path / "cache-c", trials=0)
    assert untuned["tuning_database"] is None
    _matches_onnxruntime(artifact, model)

    assert (
        main(
            [
                "tune-db",
                "export",
                "--target",
                "x86-64-avx2",
                "-o",
                str(tmp_path / "x.json"),
                "--cache-dir",
                str(tmp_path / "cache-c"),
            ]
        )
        == 2
    )
    assert "holds no records" in capsys.readouterr().err


def test_tuning_survives_an_unnamed_handler_on_meta_schedules_logger(tmp_path):
    """MetaSchedule rebuilds its logger from its handlers' names; an unnamed one (seen in a pytest-xdist
    worker that had tuned before) made every later tuning run fail before its first trial."""
    import logging

    pytest.importorskip("tvm")
    from tvm.s_tir.meta_schedule.logging import create_loggers

    from edgekiln.compiler.tvm_build.tuning import drop_unnamed_handlers, release_log_files

    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    stray = logging.StreamHandler()
    logger.addHandler(stray)
    try:
        drop_unnamed_handlers()
        assert stray not in logger.handlers
        create_loggers(str(tmp_path), [{"logger_name": "tvm.s_tir.meta_schedule.task_0", "log_dir": str(tmp_path)}])
        assert all(handler.get_name() for handler in logger.handlers)
    finally:
        logger.removeHandler(stray)
        release_log_files(tmp_path)
