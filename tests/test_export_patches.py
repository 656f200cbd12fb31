"""Export-time rewrites (compiler/passes/export_patches.py), the TVM importer's integer constants and
the fidelity check's real-token comparison: each checked on its own, in eager PyTorch or on a tiny
graph (the coverage matrix checks the compiled cells end to end)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers

from edgekiln.compiler import CompileError, Recipe, compile
from edgekiln.compiler.fidelity import real_tokens
from edgekiln.compiler.passes.export_patches import patched_for_export, refusal

from .coverage.families import make_family_folder


def _logits(model, length: int, seed: int = 0) -> torch.Tensor | str:
    ids = torch.randint(5, 90, (2, length), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    mask[1, length // 2 :] = 0
    try:
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask).logits
    except RuntimeError:  # too short for this many poolings: the original fails too
        return "fails"


@pytest.mark.parametrize(
    "separate_cls,truncate_seq,blocks",
    [(True, True, [1, 1]), (True, True, [1, 1, 1]), (True, False, [1, 1, 1]), (False, False, [1, 1, 1])],
)
def test_funnel_patch_matches_the_original_at_every_length(separate_cls, truncate_seq, blocks):
    config = transformers.FunnelConfig(
        vocab_size=100,
        block_sizes=blocks,
        d_model=32,
        n_head=2,
        d_head=16,
        d_inner=64,
        num_decoder_layers=1,
        separate_cls=separate_cls,
        truncate_seq=truncate_seq,
    )
    torch.manual_seed(0)
    model = transformers.FunnelForSequenceClassification(config).eval()
    for length in range(1, 24):
        original = _logits(model, length)
        with patched_for_export(model) as applied:
            patched = _logits(model, length)
        assert len(applied) == 2
        if isinstance(original, str) or isinstance(patched, str):
            assert original == patched, f"length {length}"
        else:
            torch.testing.assert_close(patched, original, atol=1e-6, rtol=1e-5, msg=f"length {length}")


def test_patches_are_undone_and_skip_other_models():
    from transformers.models.funnel import modeling_funnel

    before = modeling_funnel.FunnelAttentionStructure.get_position_embeds, modeling_funnel._relative_shift_gather
    bert = transformers.BertModel(transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2))
    with patched_for_export(bert) as applied:
        assert applied == []
    funnel = transformers.FunnelModel(transformers.FunnelConfig(vocab_size=100, block_sizes=[1, 1], d_model=32))
    with patched_for_export(funnel):
        assert modeling_funnel._relative_shift_gather is not before[1]
    assert (
        modeling_funnel.FunnelAttentionStructure.get_position_embeds,
        modeling_funnel._relative_shift_gather,
    ) == before


def test_nystromformer_with_landmarks_is_refused_in_one_line(tmp_path):
    folder = make_family_folder(tmp_path / "nystromformer", "nystromformer", "sequence")
    config = transformers.AutoConfig.from_pretrained(folder)
    config.num_landmarks = 4  # fewer landmarks than segment_means_seq_len: only that exact length runs
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, config=config)
    assert "exactly 64 tokens" in refusal(model)[0]
    model.save_pretrained(folder)
    with pytest.raises(CompileError, match="runs only sequences of exactly 64 tokens, in PyTorch too") as error:
        compile(folder, "x86-64-avx2", tmp_path / "art", Recipe.from_flags(backend="onnxruntime"))
    assert "\n" not in str(error.value).split(" (")[0]
    config.num_landmarks = 64
    assert refusal(transformers.AutoModelForSequenceClassification.from_config(config)) is None


def test_real_tokens_drops_padding_positions_only():
    mask = np.array([[1, 1, 1], [1, 0, 0]])
    tokens = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    pooled = np.ones((2, 4), np.float32)
    kept, same = real_tokens([tokens, pooled], {"attention_mask": mask})
    assert kept.shape == (4, 4) and np.array_equal(kept[3], tokens[1, 0])
    assert same is pooled
    assert real_tokens([tokens], {"attention_mask": np.ones((2, 3))})[0] is tokens
    three_labels = np.ones((2, 3), np.float32)  # [batch, labels] with as many labels as tokens: not per token
    assert real_tokens([three_labels], {"attention_mask": mask})[0] is three_labels


def test_integer_initializers_become_constants_for_tvm():
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    from edgekiln.compiler.tvm_build.importer import _integers_as_constants

    graph = helper.make_graph(
        [helper.make_node("Expand", ["x", "shape"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 4])],
        initializer=[
            numpy_helper.from_array(np.array([3, 4], np.int64), "shape"),
            numpy_helper.from_array(np.ones((4, 4), np.float32), "weight"),
        ],
    )
    _integers_as_constants(graph)
    assert [init.name for init in graph.initializer] == ["weight"]
    assert [(node.op_type, list(node.output)) for node in graph.node][0] == ("Constant", ["shape"])
    onnx.checker.check_graph(graph)


@pytest.mark.parametrize("head", ["sequence", "token", "encoder"])
def test_longformer_patches_match_the_original(head, tmp_path):
    from .coverage.families import _model_class

    folder = make_family_folder(tmp_path / head, "longformer", head)
    model = _model_class("longformer", head).from_pretrained(folder).eval()
    output = (lambda out: out.last_hidden_state) if head == "encoder" else (lambda out: out.logits)
    for length in (1, 7, 8, 12, 17):
        ids = torch.randint(5, 90, (2, length), generator=torch.Generator().manual_seed(length))
        mask = torch.ones_like(ids)
        mask[1, length // 2 + 1 :] = 0
        with torch.no_grad():
            original = output(model(input_ids=ids, attention_mask=mask))
            with patched_for_export(model) as applied:
                patched = output(model(input_ids=ids, attention_mask=mask))
        assert len(applied) == 3
        torch.testing.assert_close(patched, original, atol=1e-6, rtol=1e-5, msg=f"{head} at length {length}")
    assert not getattr(model.config, "onnx_export", False)
