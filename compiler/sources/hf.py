"""A Hugging Face checkpoint folder: classifier, token classifier, or bare encoder + pooling."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import numpy as np

from edgekiln.runtime.hashing import sha256_file, sha256_json
from edgekiln.runtime.manifest import Task, TokenizerSpec
from edgekiln.runtime.synthetic import make_text_feeds

from ..errors import CompileError
from ..tasks import all_tasks, auto_model_class, compiler_task
from .base import ModelSource, SourceKind, TorchSpec
from .remote_code import NO_REMOTE_CODE, refuse_remote_code
from .wrappers import Pooling

_FEEDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
_ST_POOLING = {
    "pooling_mode_cls_token": Pooling.CLS,
    "pooling_mode_max_tokens": Pooling.MAX,
    "pooling_mode_mean_sqrt_len_tokens": Pooling.MEAN_SQRT_LEN,
    "pooling_mode_mean_tokens": Pooling.MEAN,
}


def load_hf_folder(folder: Path, *, task: Task | None, pooling: Pooling | None, work_dir: Path) -> ModelSource:
    config = _read_json(folder / "config.json", folder)
    refuse_remote_code(folder)
    task = task or detect_task(config, folder)
    if pooling is not None and task is not Task.SENTENCE_EMBEDDING:
        raise CompileError(
            f"--pooling applies to sentence-embedding models; {folder.name} is {task.value}",
            hint="drop --pooling, or pass --task sentence-embedding for its pooled encoder output",
        )
    if not compiler_task(task).text_input:
        from .hf_image import load_hf_image_folder

        return load_hf_image_folder(folder, config, task, _labels(config))
    tokenizer_file, spec = export_tokenizer(folder, work_dir, config)
    names, max_length = tuple(spec.feeds), spec.max_length
    notes: list[str] = []
    normalize = False
    if task is Task.SENTENCE_EMBEDDING:
        declared, normalize = declared_pooling(folder)
        if pooling is None and declared is None:
            notes.append(f"{folder.name} declares no pooling; using mean pooling (pass --pooling to choose)")
        pooling = pooling or declared or Pooling.MEAN
    labels = _labels(config) if task is not Task.SENTENCE_EMBEDDING else None
    settings = {
        "task": task.value,
        "pooling": pooling and pooling.value,
        "normalize": normalize,
        "max_length": max_length,
        "inputs": names,
    }
    vocab = _vocab_size(tokenizer_file)
    return ModelSource(
        kind=SourceKind.HF_FOLDER,
        description=folder.resolve().name,
        content_hash=sha256_json({"files": folder_hashes(folder), "settings": settings}),
        task=task,
        labels=labels,
        make_feeds=partial(make_text_feeds, names=names, vocab_size=vocab, pad_id=spec.pad_id, max_length=max_length),
        torch=TorchSpec(
            build=partial(_build_module, folder, task, pooling, normalize),
            input_names=names,
            output_names=("sentence_embedding",) if task is Task.SENTENCE_EMBEDDING else ("logits",),
            dynamic_axes={name: {0: "batch", 1: "sequence"} for name in names},
            example=partial(_example, names, vocab),
        ),
        tokenizer_file=tokenizer_file,
        tokenizer=spec,
        notes=tuple(notes),
    )


def export_tokenizer(folder: Path, work_dir: Path, config: dict | None = None) -> tuple[Path, TokenizerSpec]:
    """Write the folder's tokenizer as one tokenizer.json into `work_dir`, and describe how its
    outputs feed the model (the runtime re-creates it from exactly these two)."""
    config = config if config is not None else _read_json(folder / "config.json", folder)
    tokenizer = _load_tokenizer(folder)
    taken = model_inputs(config)
    names = tuple(name for name in _FEEDS if name in tokenizer.model_input_names and (taken is None or name in taken))
    if "input_ids" not in names or "attention_mask" not in names:
        raise CompileError(
            f"tokenizer in {folder} does not produce input_ids and attention_mask "
            f"(it produces {tokenizer.model_input_names})"
        )
    tokenizer_file = work_dir / "tokenizer.json"
    tokenizer.backend_tokenizer.save(str(tokenizer_file))
    spec = TokenizerSpec(
        max_length=_max_length(folder, config, tokenizer),
        pad_id=tokenizer.pad_token_id or 0,
        pad_token=tokenizer.pad_token or "[PAD]",
        feeds={n: _FEEDS[n] for n in names},
        vocab_size=_positive(config.get("vocab_size")),  # the model's rows; the writer caps it
        type_vocab_size=_positive(config.get("type_vocab_size")),
    )
    return tokenizer_file, spec


def _positive(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def model_inputs(config: dict) -> frozenset[str] | None:
    """The inputs the forward of the folder's architecture takes (a BERT tokenizer beside a DistilBERT
    or ModernBERT model gives token_type_ids it does not take), or None when the class is unknown."""
    import inspect

    import transformers

    names = [getattr(transformers, name, None) for name in config.get("architectures") or []]
    classes = [cls for cls in names if cls is not None and hasattr(cls, "forward")]
    if not classes:
        return None
    return frozenset(inspect.signature(classes[0].forward).parameters)


def _vocab_size(tokenizer_file: Path) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(tokenizer_file)).get_vocab_size()


def detect_task(config: dict, folder: Path) -> Task:
    architectures = config.get("architectures") or []
    heads = [spec for spec in all_tasks() if spec.head_suffix]
    for architecture in architectures:
        for spec in heads:  # the "Model" suffix (a bare encoder) comes last, after the heads
            if architecture.endswith(spec.head_suffix):
                return spec.task
    raise CompileError(
        f"cannot tell the task of {folder}: config.json lists architectures {architectures}",
        hint="supported: *ForSequenceClassification, *ForTokenClassification, *ForImageClassification, or a bare "
        "encoder (*Model) for sentence embeddings; pass --task to override",
    )


def declared_pooling(folder: Path) -> tuple[Pooling | None, bool]:
    """Pooling and normalisation a sentence-transformers folder declares (modules.json)."""
    modules_file = folder / "modules.json"
    if not modules_file.is_file():
        return None, False
    modules = _read_json(modules_file, folder)
    types = {module.get("type", "").rsplit(".", 1)[-1]: module for module in modules}
    normalize = "Normalize" in types
    if "Pooling" not in types:
        return None, normalize
    pooling_config = _read_json(folder / types["Pooling"].get("path", "") / "config.json", folder)
    for key, pooling in _ST_POOLING.items():
        if pooling_config.get(key):
            return pooling, normalize
    raise CompileError(
        f"{folder}: the pooling its modules.json declares is not supported ({pooling_config})",
        hint=f"pass --pooling {{{','.join(p.value for p in Pooling)}}}",
    )


def folder_hashes(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): sha256_file(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    }


def _read_json(path: Path, folder: Path) -> dict | list:
    if not path.is_file():
        raise CompileError(
            f"{folder} is not a Hugging Face model folder: it has no {path.relative_to(folder)}",
            hint="pass a folder saved with save_pretrained(), or an .onnx file",
        )
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompileError(f"{path} is not valid JSON: {exc}") from None


def _load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    has_files = any(
        (folder / name).is_file()
        for name in ("tokenizer.json", "vocab.txt", "tokenizer.model", "vocab.json", "spiece.model")
    )
    if not has_files:
        raise CompileError(
            f"{folder} has no tokenizer (no tokenizer.json, vocab.txt or tokenizer.model)",
            hint="save the tokenizer beside the model: tokenizer.save_pretrained(folder)",
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, use_fast=True, **NO_REMOTE_CODE)
    except Exception as exc:  # transformers raises many types for broken tokenizer files
        raise CompileError(
            f"cannot load the tokenizer in {folder}: {exc}", hint="re-save it with tokenizer.save_pretrained(folder)"
        ) from None
    if not getattr(tokenizer, "is_fast", False):
        raise CompileError(
            f"the tokenizer in {folder} has no fast (Rust) version, which the runtime needs",
            hint="save a tokenizer.json with a fast tokenizer",
        )
    return tokenizer


# Families whose position ids start after the padding id (fairseq's scheme): position i is row
# pad_token_id + 1 + i, so max_position_embeddings rows hold pad_token_id + 1 fewer tokens (roberta-base:
# 514 rows, 512 tokens). MPNet's padding id is fixed at 1; ESM's rotary variant has no position table.
OFFSET_POSITIONS = frozenset(
    (
        "camembert",
        "data2vec-text",
        "esm",
        "ibert",
        "layoutlmv3",
        "lilt",
        "longformer",
        "luke",
        "markuplm",
        "mpnet",
        "roberta",
        "roberta-prelayernorm",
        "xlm-roberta",
        "xlm-roberta-xl",
        "xmod",
    )
)


def position_limit(config: dict) -> int:
    """The longest input the model's position table holds."""
    rows = int(config.get("max_position_embeddings", 512))
    model_type = config.get("model_type")
    if model_type not in OFFSET_POSITIONS or config.get("position_embedding_type", "absolute") != "absolute":
        return rows
    pad = 1 if model_type == "mpnet" else config.get("pad_token_id")
    return rows - (pad if isinstance(pad, int) and pad >= 0 else 1) - 1


def _max_length(folder: Path, config: dict, tokenizer) -> int:
    limits = [position_limit(config)]
    if 0 < getattr(tokenizer, "model_max_length", 0) < 100_000:
        limits.append(tokenizer.model_max_length)
    st_config = folder / "sentence_bert_config.json"
    if st_config.is_file():
        limits.append(_read_json(st_config, folder).get("max_seq_length", limits[0]))
    return int(min(limits))


def _labels(config: dict) -> tuple[str, ...] | None:
    id2label = config.get("id2label")
    if not id2label:
        return None
    return tuple(str(id2label[key]) for key in sorted(id2label, key=int))


def _build_module(folder: Path, task: Task, pooling: Pooling | None, normalize: bool):
    from .wrappers import LogitsHead, SentenceEmbedding

    model = load_model(auto_model_class(task), folder)
    wrapper = SentenceEmbedding(model, pooling, normalize) if task is Task.SENTENCE_EMBEDDING else LogitsHead(model)
    return wrapper.eval()


def load_model(auto, folder: Path):
    """The folder's weights through the transformers Auto class `auto`; failures are one CompileError."""
    from transformers.utils import logging as hf_logging

    from ..pruning.loading import load_pretrained

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # edgekiln reports its own progress
    try:
        return load_pretrained(auto, folder)
    except Exception as exc:  # corrupt weights, unknown model_type, missing files
        raise CompileError(
            f"transformers cannot load the model in {folder}: {exc}",
            hint="check the folder loads with from_pretrained() and its weights are complete",
        ) from None
    finally:
        if bars:
            hf_logging.enable_progress_bar()


def _example(names: tuple[str, ...], vocab_size: int) -> tuple:
    import torch

    feeds = make_text_feeds(
        2, 16, np.random.default_rng(0), names=names, vocab_size=vocab_size, pad_id=0, max_length=16
    )
    return tuple(torch.from_numpy(feeds[name]) for name in names)
