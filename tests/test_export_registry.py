"""The dynamo exporter's ATen -> ONNX registry, built once per process (compiler/passes/export_registry.py):
a reused registry must be the one torch would build, per opset, rebuilt when torchlib gains a function,
never shared between exports (they may add to it), and the export must come out the same."""

from __future__ import annotations

import pytest

pytest.importorskip("onnxscript")

from edgekiln.compiler.passes import export_registry  # noqa: E402


def _fresh(opset: int):
    from torch.onnx._internal.exporter import _registration

    return _registration.ONNXRegistry.from_torchlib(opset_version=opset)


def _table(registry) -> dict:
    return {target: [meta.onnx_function for meta in metas] for target, metas in registry.functions.items()}


@pytest.mark.parametrize("opset", [18, 20])
def test_reused_registry_is_the_one_torch_builds(opset):
    reused = export_registry.registry_for(opset)
    assert reused.opset_version == opset
    assert _table(reused) == _table(_fresh(opset))


def test_each_opset_has_its_own_registry():
    """A registry built for one opset must never answer for another (the key holds the opset)."""
    old, new = export_registry.registry_for(18), export_registry.registry_for(23)
    assert (old.opset_version, new.opset_version) == (18, 23)
    assert _table(old) == _table(_fresh(18)) and _table(new) == _table(_fresh(23))
    assert _table(old) != _table(new)  # opset 23 picks newer implementations of some operators


def test_every_export_gets_its_own_copy():
    first = export_registry.registry_for(18)
    target = next(iter(first.functions))
    first.functions[target].append("added by one export")
    first.functions.pop(next(t for t in first.functions if t != target))
    assert _table(export_registry.registry_for(18)) == _table(_fresh(18))


def test_a_new_torchlib_function_rebuilds_the_registry():
    """Registering a torchlib function after a registry was built must not be answered from the old one."""
    import torch
    from onnxscript import opset18 as op
    from onnxscript.function_libs.torch_lib.registration import default_registry, torch_op

    export_registry.registry_for(18)
    name = "aten::special_i1e"  # an operator torchlib has no function for
    assert name not in default_registry

    @torch_op(name, trace_only=True)
    def i1e(self):
        return op.Identity(self)

    try:
        reused = export_registry.registry_for(18)
        assert [meta.onnx_function for meta in reused.functions[name]] == [i1e]
        assert _table(reused) == _table(_fresh(18))
    finally:
        default_registry._registry.pop(name)
    assert name not in export_registry.registry_for(18).functions
    assert torch.ops.aten.special_i1e.default.name() == name


def test_torch_onnx_export_takes_the_reused_registry_and_gives_the_same_model(tmp_path):
    import onnx
    import torch
    from torch.onnx._internal.exporter import _registration

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.GELU(), torch.nn.LayerNorm(3)).eval()
    example = (torch.randn(2, 4),)

    def export(path):
        torch.onnx.export(model, example, str(path), dynamo=True, opset_version=18, external_data=False, verbose=False)
        return onnx.load(str(path))

    plain = export(tmp_path / "plain.onnx")
    built = []
    with export_registry.reused_registry():
        original = export_registry.registry_for
        export_registry.registry_for = lambda opset: built.append(opset) or original(opset)
        try:
            reused = export(tmp_path / "reused.onnx")
        finally:
            export_registry.registry_for = original
    assert built == [18]  # the export asked for its registry through the cache
    assert _registration.ONNXRegistry.__dict__["from_torchlib"] is export_registry._ORIGINAL  # restored
    assert reused.graph == plain.graph


def test_an_unknown_torch_layout_leaves_the_export_alone(monkeypatch):
    """Another torch or onnxscript version without these internals: exports build their own registry."""
    from torch.onnx._internal.exporter import _registration

    def missing():
        raise AttributeError("no torchlib registry here")

    monkeypatch.setattr(export_registry, "torchlib_fingerprint", missing)
    with export_registry.reused_registry():
        assert _registration.ONNXRegistry.__dict__["from_torchlib"] is export_registry._original()
