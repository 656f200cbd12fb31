"""Index inputs: an integer input that only indexes fixed tables (Gather) records the values they
accept in the manifest (`value_range`), and every backend refuses others the same way (OpenVINO
answered an index past its table with zeros, where ONNX Runtime refuses)."""

from __future__ import annotations

import numpy as np
import pytest

from edgekiln.compiler.graph_io import graph_io
from edgekiln.runtime import ArtifactError, InputError, load

from .artifact_tools import edit_manifest
from .test_any_onnx import T, _compile, _matches_ort, _save, h, nh

ROWS = 10


def _lookup(path, *, also_added: bool = False, axis: int = 0):
    """y = table[ids] (+ ids as floats when `also_added`: then ids is more than an index)."""
    table = nh.from_array(np.arange(ROWS * 4, dtype=np.float32).reshape((ROWS, 4) if axis == 0 else (4, ROWS)), "t")
    nodes = [h.make_node("Gather", ["t", "ids"], ["y"], axis=axis)]
    outputs = [h.make_tensor_value_info("y", T.FLOAT, ["batch", 3, 4] if axis == 0 else [4, "batch", 3])]
    if also_added:
        nodes.append(h.make_node("Cast", ["ids"], ["f"], to=T.FLOAT))
        outputs.append(h.make_tensor_value_info("f", T.FLOAT, ["batch", 3]))
    return _save(path, nodes, [h.make_tensor_value_info("ids", T.INT64, ["batch", 3])], outputs, [table])


def test_graph_io_gives_an_index_input_its_range(tmp_path):
    import onnx

    assert graph_io(onnx.load(str(_lookup(tmp_path / "a.onnx"))))[0][0].value_range == (-ROWS, ROWS - 1)
    assert graph_io(onnx.load(str(_lookup(tmp_path / "b.onnx", axis=1))))[0][0].value_range == (-ROWS, ROWS - 1)
    assert graph_io(onnx.load(str(_lookup(tmp_path / "c.onnx", also_added=True))))[0][0].value_range is None


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_every_backend_refuses_an_index_past_its_table(backend, tmp_path):
    if backend != "onnxruntime":
        pytest.importorskip(backend)
    model = _lookup(tmp_path / "lookup.onnx")
    result = _compile(model, tmp_path / "art", backend)
    assert result.manifest.inputs[0].value_range == (-ROWS, ROWS - 1)
    _matches_ort(result.path, model, {"ids": np.array([[0, 9, -10], [3, -1, 5]], np.int64)})
    session = load(result.path)
    for bad in (ROWS, -ROWS - 1):
        with pytest.raises(InputError, match=rf"input ids holds values .*table of {ROWS} rows, so it takes -10..9"):
            session.run({"ids": np.array([[0, 1, bad]], np.int64)})


def test_an_input_used_otherwise_is_not_limited(tmp_path):
    result = _compile(_lookup(tmp_path / "m.onnx", also_added=True), tmp_path / "art", "onnxruntime")
    assert result.manifest.inputs[0].value_range is None


def test_schema_2_artifacts_still_load_and_older_ones_do_not(tmp_path):
    path = _compile(_lookup(tmp_path / "m.onnx", also_added=True), tmp_path / "art", "onnxruntime").path

    def as_schema_2(manifest):  # without the fields schema 3 added, as a schema 2 compiler wrote it
        manifest["schema_version"] = 2
        for spec in manifest["inputs"]:
            del spec["value_range"]

    edit_manifest(path, as_schema_2, reseal=True)
    assert load(path).run({"ids": np.zeros((1, 3), np.int64)})["y"].shape == (1, 3, 4)
    edit_manifest(path, lambda m: m.update(schema_version=1), reseal=True)
    with pytest.raises(ArtifactError, match="schema version 1 is older than this runtime supports"):
        load(path)
