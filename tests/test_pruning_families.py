"""Structured pruning across the encoder families of the coverage matrix: each family whose layers
follow the Q/K/V + output + two-Linear FFN pattern is cut, matches its zeroed-group twin and reloads;
every other family is refused with its reason. `--prune-flops 0.4` on DistilBERT-, DeBERTa-v2-,
ALBERT- and MPNet-shaped classifiers, end to end."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
import transformers

from edgekiln.compiler import CompileError, Recipe, compile
from edgekiln.compiler.pruning.apply import apply_plan, heads_fixed_reason, zeroed_twin
from edgekiln.compiler.pruning.config import Importance, PruneConfig
from edgekiln.compiler.pruning.flops import encoder_flops
from edgekiln.compiler.pruning.importance import importance_scores
from edgekiln.compiler.pruning.loading import load_pretrained, save_pretrained
from edgekiln.compiler.pruning.plan import plan_flops, plan_ratios
from edgekiln.compiler.pruning.structure import encoder_blocks, shape_of
from edgekiln.runtime import load

from .coverage.expected import PRUNE_REFUSED
from .coverage.families import FAMILIES, make_family_folder
from .test_coverage_matrix import coverage_results  # noqa: F401  (the shared results fixture)

ATOL = 1e-5
FLOPS_FAMILIES = ("distilbert", "deberta-v2", "albert", "mpnet")
# Real encoders' proportions: FFN 4x the hidden size; FLOPs counted at a sequence of hidden/2 keeps the
# attention-score share near MPNet-base's at 128 tokens. (At FFN 2x, heads carry half the FLOPs.)
REAL_FFN, FLOPS_SEQUENCE = 128, 16


def _classifier(folder):
    return transformers.AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()


def _logits(model, seed: int = 0) -> np.ndarray:
    ids = torch.randint(5, 90, (3, 11), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    mask[2, 6:] = 0
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits.numpy()


def _prune_half(original):
    """Half the heads and FFN neurons by magnitude (FFN only where the heads cannot go)."""
    fixed = heads_fixed_reason(original)
    plan = plan_ratios(*importance_scores(original, [], Importance.MAGNITUDE), 0.0 if fixed else 0.5, 0.5, 8)
    small, twin = copy.deepcopy(original), zeroed_twin(original, plan)
    apply_plan(small, plan)
    return plan, fixed, small, twin


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_prunes_or_is_refused_with_the_reason(family, tmp_path, coverage_results):  # noqa: F811
    original = _classifier(make_family_folder(tmp_path / "model", family, "sequence"))
    refused = PRUNE_REFUSED.get(family)
    key = f"{family}|prune|-"
    if refused:
        with pytest.raises(CompileError, match=refused) as error:
            _prune_half(original)
        coverage_results[key] = {"status": "unsupported", "reason": str(error.value).splitlines()[0]}
        return
    coverage_results[key] = {"status": "fail", "reason": "pruning failed"}
    plan, fixed, small, twin = _prune_half(original)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in original.parameters())
    np.testing.assert_allclose(_logits(small), _logits(twin), atol=ATOL)
    save_pretrained(small, tmp_path / "small")
    reloaded = load_pretrained(transformers.AutoModelForSequenceClassification, tmp_path / "small")
    assert shape_of(reloaded) == plan.shape
    np.testing.assert_allclose(_logits(reloaded, 1), _logits(small, 1), atol=ATOL)
    coverage_results[key] = {"status": "pass", "reason": f"FFN only: {fixed}" if fixed else ""}


def test_albert_shared_layer_is_pruned_once_for_all(tmp_path):
    model = _classifier(make_family_folder(tmp_path / "albert", "albert", "sequence"))
    blocks = encoder_blocks(model)
    assert len(blocks) == 1 and blocks[0].uses == model.config.num_hidden_layers


@pytest.mark.parametrize("family", FLOPS_FAMILIES)
def test_flops_target_on_other_families(family, tmp_path):
    """The plan meets 0.4 of the FLOPs; the cut model reloads and matches its zeroed twin."""
    original = _classifier(make_family_folder(tmp_path / "model", family, "sequence", ffn=REAL_FFN))
    blocks = encoder_blocks(original)
    dims = (original.config.hidden_size, blocks[0].head_size, FLOPS_SEQUENCE)
    fixed = heads_fixed_reason(original)
    assert (fixed is not None) == (family == "mpnet"), fixed  # MPNet's relative-position bias spans every head
    plan = plan_flops(*importance_scores(original, [], Importance.MAGNITUDE), 0.4, 8, dims, bool(fixed))
    full = encoder_flops(shape_of(original), *dims)
    assert 1 - encoder_flops(plan.shape, *dims) / full >= 0.4
    small, twin = copy.deepcopy(original), zeroed_twin(original, plan)
    apply_plan(small, plan)
    save_pretrained(small, tmp_path / "small")
    reloaded = load_pretrained(transformers.AutoModelForSequenceClassification, tmp_path / "small")
    np.testing.assert_allclose(_logits(reloaded), _logits(twin), atol=ATOL)


@pytest.mark.parametrize("family", FLOPS_FAMILIES)
def test_prune_flops_compiles_end_to_end(family, tmp_path):
    folder = make_family_folder(tmp_path / "model", family, "sequence", ffn=REAL_FFN)
    prune = PruneConfig(flops=0.4, importance=Importance.MAGNITUDE, flops_sequence=FLOPS_SEQUENCE)
    result = compile(folder, "x86-64-avx2", tmp_path / "art", Recipe.from_flags(backend="onnxruntime", prune=prune))
    report = json.loads((result.path / "reports" / "pruning.json").read_text())
    assert report["flops_reduction"] >= 0.4, report["flops_reduction"]
    assert json.loads((result.path / "reports" / "verify_fidelity.json").read_text())["passed"]
    names = [spec.name for spec in result.manifest.inputs]
    feeds = {
        "input_ids": np.array([[2, 40, 41, 42, 43, 3]]),
        "attention_mask": np.ones((1, 6), np.int64),
        "token_type_ids": np.zeros((1, 6), np.int64),
    }
    assert load(result.path).run({n: feeds[n] for n in names})["logits"].shape == (1, 2)


def test_heads_of_mpnet_are_refused_with_the_reason(tmp_path, capsys):
    from edgekiln.cli.main import main

    folder = make_family_folder(tmp_path / "mpnet", "mpnet", "sequence")
    code = main(
        [
            "compile",
            str(folder),
            "--target",
            "x86-64-avx2",
            "--backend",
            "onnxruntime",
            "-o",
            str(tmp_path / "o"),
            "--prune-heads",
            "0.5",
            "--prune-importance",
            "magnitude",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--prune-heads: the heads of this model cannot be removed" in err, err
