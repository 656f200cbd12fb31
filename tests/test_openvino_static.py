"""OpenVINO with static shapes (`--sequence-buckets` on `--backend openvino`): requests padded to the next
length and run on a model compiled for that shape give what the dynamic IR gives, on every text task."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from edgekiln.runtime.backends.openvino_shapes import SHAPES_FILE, StaticDispatch, StaticShapes

SHAPES = StaticShapes(
    sequences=(4, 8),
    sequence_axes={"input_ids": 1, "attention_mask": 1},
    pad_values={"input_ids": 7, "attention_mask": 0},
    output_sequence_axes={"hidden": 1},
    max_compiled=2,
)


def _feeds(batch: int, sequence: int) -> dict[str, np.ndarray]:
    ids = np.arange(batch * sequence, dtype=np.int64).reshape(batch, sequence) + 1
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def _echo(feeds):  # a "model" whose outputs show exactly what it was given
    return {"hidden": feeds["input_ids"][..., None].astype(np.float32), "pooled": feeds["attention_mask"].sum(1)}


def _fake():
    compiled, dynamic_calls = [], []

    def compile_static(shapes):
        compiled.append(shapes)

        def run(feeds):
            assert {name: list(array.shape) for name, array in feeds.items()} == shapes
            return _echo(feeds)

        return run

    def dynamic(feeds):
        dynamic_calls.append({name: array.shape for name, array in feeds.items()})
        return _echo(feeds)

    return StaticDispatch(SHAPES, compile_static, dynamic), compiled, dynamic_calls


def test_requests_are_padded_to_the_next_length_and_cut_back():
    dispatch, compiled, dynamic_calls = _fake()
    feeds = _feeds(2, 3)
    out = dispatch(feeds)
    assert compiled == [{"input_ids": [2, 4], "attention_mask": [2, 4]}] and not dynamic_calls
    np.testing.assert_array_equal(out["hidden"][..., 0], feeds["input_ids"])  # cut back to 3 positions
    np.testing.assert_array_equal(out["pooled"], [3, 3])  # the padded positions were masked (pad value 0)
    dispatch(_feeds(2, 4))  # the same (batch, length): compiled once
    assert len(compiled) == 1 and dispatch.compiled_shapes == [(2, 4)]


def test_longer_requests_and_shapes_past_the_limit_run_dynamic():
    dispatch, compiled, dynamic_calls = _fake()
    assert dispatch(_feeds(1, 9))["hidden"].shape == (1, 9, 1)  # past the longest length
    dispatch(_feeds(1, 5))
    dispatch(_feeds(3, 2))
    assert dispatch.compiled_shapes == [(1, 8), (3, 4)]
    out = dispatch(_feeds(2, 2))  # a third static shape would pass max_compiled=2
    assert out["hidden"].shape == (2, 2, 1)
    assert dynamic_calls == [
        {"input_ids": (1, 9), "attention_mask": (1, 9)},
        {"input_ids": (2, 2), "attention_mask": (2, 2)},
    ]


def test_a_compile_blocks_neither_other_shapes_nor_compiles_twice():
    release, started, compiles = threading.Event(), threading.Event(), []

    def compile_static(shapes):
        compiles.append(shapes["input_ids"])
        if shapes["input_ids"] == [1, 8]:  # the slow one
            started.set()
            assert release.wait(10)
        return _echo

    dispatch = StaticDispatch(SHAPES, compile_static, _echo)
    dispatch(_feeds(1, 3))  # (1, 4) compiled beforehand
    slow = [threading.Thread(target=dispatch, args=(_feeds(1, 6),)) for _ in range(3)]
    for thread in slow:
        thread.start()
    assert started.wait(10)
    quick = threading.Thread(target=dispatch, args=(_feeds(1, 4),))
    quick.start()
    quick.join(5)
    finished = not quick.is_alive()  # a compiled shape does not wait for (1, 8)'s compile
    release.set()
    for thread in slow:
        thread.join(10)
    assert finished
    assert compiles == [[1, 4], [1, 8]] and dispatch.compiled_shapes == [(1, 4), (1, 8)]


def test_a_shape_openvino_cannot_fix_runs_dynamic():
    def refuse(shapes):
        raise RuntimeError("cannot reshape")

    dispatch = StaticDispatch(SHAPES, refuse, _echo)
    assert dispatch(_feeds(1, 3))["hidden"].shape == (1, 3, 1)
    assert dispatch.compiled_shapes == []


def test_inputs_that_disagree_on_the_length_are_one_error():
    from edgekiln.runtime.errors import InputError

    dispatch, _, _ = _fake()
    with pytest.raises(InputError, match=r"disagree on the sequence length: \[3, 4\]"):
        dispatch({"input_ids": np.ones((1, 3), np.int64), "attention_mask": np.ones((1, 4), np.int64)})


def test_the_shapes_file_rejects_bad_lengths():
    with pytest.raises(ValueError, match="increasing"):
        StaticShapes(sequences=(8, 4), sequence_axes={"input_ids": 1})


# --- real OpenVINO -------------------------------------------------------------------------------

TEXTS = ["i love this movie", "john visited paris and london and the plot was boring", "bad"]


@pytest.fixture(scope="module")
def static_artifacts(bert_folders, tmp_path_factory):
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    from edgekiln.compiler import Recipe, compile

    root, recipe = (
        tmp_path_factory.mktemp("openvino-static"),
        Recipe.from_flags(backend="openvino", sequence_buckets=(8, 16)),
    )
    return {
        kind: compile(bert_folders[kind], "x86-64-avx2", root / kind, recipe).path
        for kind in ("sequence", "token", "encoder")
    }


def test_static_artifact_holds_the_shapes_and_its_check(static_artifacts):
    folder = static_artifacts["sequence"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert SHAPES_FILE in manifest["files"] and manifest["model_file"] == "model.xml"
    assert [p["name"] for p in manifest["passes"]][-2:] == ["lower_openvino", "openvino_static_shapes"]
    shapes = StaticShapes.model_validate_json((folder / SHAPES_FILE).read_text())
    assert shapes.sequences == (8, 16) and shapes.pad_values["attention_mask"] == 0
    report = json.loads((folder / "reports" / "openvino_static_shapes.json").read_text())
    assert report["passed"] and report["details"]["checked_shapes"]  # the fidelity shapes ran static


@pytest.mark.parametrize("kind", ["sequence", "token", "encoder"])
def test_static_shapes_match_onnx_runtime_on_every_task(static_artifacts, artifacts, kind):
    from edgekiln.runtime import load

    reference, static = load(artifacts[kind]), load(static_artifacts[kind])
    for texts in (TEXTS, TEXTS[:1], TEXTS[1:2]):
        feeds, _ = reference.encoder.encode(texts)
        expected, got = reference.run(feeds), static.run(feeds)
        assert got.keys() == expected.keys()
        for name in expected:
            assert got[name].shape == expected[name].shape
            np.testing.assert_allclose(got[name], expected[name], atol=1e-4, err_msg=f"{kind} {name} {texts}")
    long, _ = reference.encoder.encode(["the film " * 20])  # past the longest length (16): the dynamic IR
    for name, expected in reference.run(long).items():
        np.testing.assert_allclose(static.run(long)[name], expected, atol=1e-4)


def test_static_session_is_thread_safe(static_artifacts):
    from edgekiln.runtime import load

    session = load(static_artifacts["sequence"])
    inputs = [[" ".join(["good"] * n)] for n in range(1, 15)]
    expected = [session.run(session.encoder.encode(texts)[0])["logits"] for texts in inputs]
    fresh = load(static_artifacts["sequence"])  # no shape compiled yet: threads race to compile
    failures = []

    def worker(offset: int) -> None:
        for step in range(len(inputs)):
            i = (offset + step) % len(inputs)
            got = fresh.run(fresh.encoder.encode(inputs[i])[0])["logits"]
            if not np.allclose(got, expected[i], atol=1e-5):
                failures.append(i)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []


def test_warm_up_compiles_every_static_length_before_the_first_request(static_artifacts, monkeypatch):
    """A server's first request of each length must not pay for compiling that shape: warm_up does it."""
    from edgekiln.runtime import load
    from edgekiln.runtime.serve.models import load_models

    monkeypatch.setenv("EDGEKILN_OPENVINO_CACHE_GB", "0")  # no OpenVINO model cache: each compile is real
    session = load(static_artifacts["sequence"])
    dispatch = session.backend._run
    assert session.backend.static_lengths == (8, 16) and dispatch.compiled_shapes == []
    feeds, _ = session.encoder.encode(TEXTS[1:2])
    before = load(static_artifacts["sequence"]).run(feeds)["logits"]
    warm = session.warm_up()
    assert warm.shapes == ((1, 8), (1, 16)) and dispatch.compiled_shapes == [(1, 8), (1, 16)]
    assert "2 warm-up call(s) (1x8, 1x16)" in warm.describe()
    np.testing.assert_allclose(session.run(feeds)["logits"], before, atol=1e-5)  # warming changed nothing
    assert dispatch.compiled_shapes == [(1, 8), (1, 16)]  # that request found its shape compiled
    (served,) = load_models([str(static_artifacts["token"])])  # edgekiln serve warms each model up
    assert served.warm.shapes == ((1, 8), (1, 16)) and served.session.backend._run.compiled_shapes == [(1, 8), (1, 16)]
    (cold,) = load_models([str(static_artifacts["token"])], warm_up=False)  # --no-warm-up
    assert cold.warm is None and cold.session.backend._run.compiled_shapes == []
    many = load(static_artifacts["encoder"]).warm_up(batches=range(1, 10))  # 18 shapes; OpenVINO keeps 16
    assert len(many.shapes) == 16 and many.shapes[-1] == (8, 16)


def test_buckets_on_a_model_without_a_sequence_axis_are_refused(tmp_path):
    pytest.importorskip("openvino", reason="the openvino extra is not installed")
    import onnx
    from onnx import TensorProto, helper

    from edgekiln.compiler import CompileError, Recipe, compile

    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 2], np.ones(8, np.float32).tolist())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [weight],
    )
    path = tmp_path / "mlp.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    recipe = Recipe.from_flags(backend="openvino", sequence_buckets=(8,))
    with pytest.raises(CompileError, match="sequence axis; this model's inputs have none"):
        compile(path, "x86-64-avx2", tmp_path / "out", recipe)
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_buckets_are_an_option_of_openvino_and_tvm_only(bert_folders, tmp_path):
    from edgekiln.compiler import CompileError, Recipe, compile

    with pytest.raises(CompileError, match="do not apply to the onnxruntime backend"):
        compile(
            bert_folders["sequence"],
            "x86-64-avx2",
            tmp_path / "o",
            Recipe.from_flags(backend="onnxruntime", sequence_buckets=(8,)),
        )
    with pytest.raises(CompileError, match="increasing positive lengths"):
        compile(
            bert_folders["sequence"],
            "x86-64-avx2",
            tmp_path / "o",
            Recipe.from_flags(backend="openvino", sequence_buckets=(16, 8)),
        )
