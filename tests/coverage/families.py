"""The encoder families of the coverage matrix: the smallest config of each (hidden 32, 2 layers,
2 heads, the shared ~100-token WordPiece vocabulary), saved as a Hugging Face folder with a tokenizer
for sequence classification, token classification or a bare encoder with declared mean pooling.
The matrix builds most families with one layer (`matrix_layers`); pruning keeps two."""

from __future__ import annotations

import json
from pathlib import Path

from ..conftest import LABELS_TEXT, LABELS_TOKENS, _vocab

HIDDEN, LAYERS, HEADS, FFN, POSITIONS = 32, 2, 2, 64, 64
_BERT_LIKE = dict(
    hidden_size=HIDDEN,
    num_hidden_layers=LAYERS,
    num_attention_heads=HEADS,
    intermediate_size=FFN,
    max_position_embeddings=POSITIONS,
)
_ROBERTA_LIKE = dict(_BERT_LIKE, max_position_embeddings=POSITIONS + 2, pad_token_id=0, bos_token_id=2, eos_token_id=3)
NO_TYPES = ("input_ids", "attention_mask")  # the feeds of families whose real tokenizers give no token_type_ids

# family -> (transformers model_type, config keywords, tokenizer outputs or None for BERT's three)
FAMILIES: dict[str, tuple[str, dict, tuple[str, ...] | None]] = {
    "bert": ("bert", _BERT_LIKE, None),
    "distilbert": (
        "distilbert",
        dict(dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=FFN, max_position_embeddings=POSITIONS),
        None,
    ),  # BERT's tokenizer: token types
    "roberta": ("roberta", _ROBERTA_LIKE, NO_TYPES),
    "xlm-roberta": ("xlm-roberta", _ROBERTA_LIKE, NO_TYPES),
    "camembert": ("camembert", _ROBERTA_LIKE, NO_TYPES),
    "electra": ("electra", dict(_BERT_LIKE, embedding_size=HIDDEN), None),
    "albert": ("albert", dict(_BERT_LIKE, embedding_size=16), None),
    "deberta": ("deberta", dict(_BERT_LIKE, type_vocab_size=0), None),
    "deberta-v2": ("deberta-v2", dict(_BERT_LIKE, type_vocab_size=0), None),
    "mpnet": ("mpnet", _ROBERTA_LIKE, NO_TYPES),
    "modernbert": (
        "modernbert",
        dict(
            _BERT_LIKE,
            pad_token_id=0,
            bos_token_id=2,
            eos_token_id=3,
            cls_token_id=2,
            sep_token_id=3,
            global_attn_every_n_layers=2,
            local_attention=16,
        ),
        NO_TYPES,
    ),
    "funnel": (
        "funnel",
        dict(block_sizes=[1, 1], d_model=HIDDEN, n_head=HEADS, d_head=16, d_inner=FFN, num_decoder_layers=1),
        None,
    ),
    "convbert": ("convbert", dict(_BERT_LIKE, embedding_size=HIDDEN, head_ratio=1, conv_kernel_size=3), None),
    "mobilebert": (
        "mobilebert",
        dict(_BERT_LIKE, embedding_size=16, intra_bottleneck_size=16, true_hidden_size=16, num_feedforward_networks=1),
        None,
    ),
    "squeezebert": (
        "squeezebert",
        dict(
            _BERT_LIKE,
            embedding_size=HIDDEN,
            q_groups=2,
            k_groups=2,
            v_groups=2,
            post_attention_groups=2,
            intermediate_groups=2,
            output_groups=2,
        ),
        None,
    ),
    "longformer": (  # one layer: its sliding-window export is ~6x a BERT layer's, and one shows it
        "longformer",
        dict(_ROBERTA_LIKE, num_hidden_layers=1, attention_window=[8]),
        NO_TYPES,
    ),
    "big_bird": ("big_bird", dict(_BERT_LIKE, attention_type="original_full"), None),
    "ernie": ("ernie", _BERT_LIKE, None),
    "nomic_bert": ("nomic_bert", _BERT_LIKE, None),
    "eurobert": (
        "eurobert",
        dict(_BERT_LIKE, pad_token_id=0, bos_token_id=2, eos_token_id=3, mask_token_id=4),
        NO_TYPES,
    ),
    "xlm": (
        "xlm",
        dict(
            emb_dim=HIDDEN,
            n_layers=LAYERS,
            n_heads=HEADS,
            max_position_embeddings=POSITIONS,
            pad_index=0,
            unk_index=1,
            bos_index=2,
            eos_index=3,
            mask_index=4,
            n_langs=1,
        ),
        None,
    ),
    "nystromformer": (
        "nystromformer",
        dict(_BERT_LIKE, num_landmarks=POSITIONS, segment_means_seq_len=POSITIONS),
        None,
    ),
}
KINDS = ("sequence", "token", "encoder")
# Families the matrix builds with their config's two layers: ALBERT runs one shared layer on every pass
# (the sharing is what is tested), ModernBERT alternates global and sliding-window attention; with one
# Nystroemformer layer the error its convolution takes from TVM's bucket padding stays within the
# sequence logits' tolerance (that cell would pass on TVM, where deeper checkpoints fail), and with one
# ConvBERT layer TVM's convolution drift is 2x its limit instead of 8x (a refusal that close could flip).
# Every other family repeats one identical layer, so the matrix builds it with one: the export,
# conversion and TVM build cost grow with the layers, and each layer holds the same operators.
STACKED = frozenset({"albert", "modernbert", "nystromformer", "convbert"})


def matrix_layers(family: str) -> int | None:
    """The layers the coverage matrix builds `family` with (None: its config's, for STACKED families and
    those with no layer count to lower: Funnel's blocks, Longformer's one layer)."""
    keywords = FAMILIES[family][1]
    count = keywords.get("num_hidden_layers", keywords.get("n_layers"))
    return None if family in STACKED or count in (None, 1) else 1


def make_family_folder(
    folder: Path, family: str, kind: str, *, seed: int = 0, ffn: int | None = None, layers: int | None = None
) -> Path:
    """Save a tiny random `family` model of `kind` (sequence, token, encoder) with a WordPiece tokenizer;
    `ffn` overrides the FFN width (DistilBERT calls it hidden_dim), `layers` the number of layers."""
    import torch
    import transformers

    model_type, keywords, feeds = FAMILIES[family]
    if ffn is not None:
        keywords = {**keywords, ("hidden_dim" if "hidden_dim" in keywords else "intermediate_size"): ffn}
    if layers is not None:
        keywords = {**keywords, ("n_layers" if "n_layers" in keywords else "num_hidden_layers"): layers}
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(_vocab()) + "\n")
    extra = {"model_input_names": list(feeds)} if feeds else {}
    tokenizer = transformers.BertTokenizerFast.from_pretrained(str(folder), do_lower_case=True, **extra)
    labels = {"sequence": LABELS_TEXT, "token": LABELS_TOKENS}.get(kind, ())
    config = transformers.AutoConfig.for_model(
        model_type,
        vocab_size=len(_vocab()),
        id2label=dict(enumerate(labels)) or None,
        label2id={label: i for i, label in enumerate(labels)} or None,
        **keywords,
    )
    torch.manual_seed(seed)
    _model_class(model_type, kind)(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    if kind == "encoder":  # declare pooling the way sentence-transformers folders do
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
        (folder / "modules.json").write_text(
            json.dumps(
                [
                    {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                    {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
                ]
            )
        )
    return folder


def _model_class(model_type: str, kind: str):
    import transformers
    from transformers.models.auto import modeling_auto

    names = {
        "sequence": modeling_auto.MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
        "token": modeling_auto.MODEL_FOR_TOKEN_CLASSIFICATION_MAPPING_NAMES,
        "encoder": modeling_auto.MODEL_MAPPING_NAMES,
    }[kind][model_type]
    return getattr(transformers, names[0] if isinstance(names, tuple) else names)  # Funnel: FunnelModel
