"""What the coverage matrix expects of each cell that is not plainly supported.

UNSUPPORTED: the compile must refuse with one error line containing this text (the README shows the
user's line). KNOWN_BUGS: strict expected failures, fixed on another branch (the merge flips them)."""

from __future__ import annotations

from fnmatch import fnmatch

# (family, task, backend) glob -> a fragment of the one-line error the compile raises
UNSUPPORTED: dict[tuple[str, str, str], str] = {
    # transformers computes Funnel's relative positions with Python lists of the traced length
    ("funnel", "*", "*"): "fails at input_ids \\[1, 8\\].*: .*GatherElements",
    # the sliding-window chunking is traced at the export's length (16 tokens: two windows of 8)
    ("longformer", "*", "*"): "fails at input_ids \\[1, 8\\].*: .*Gather",
    # Nyströmformer takes only sequences of exactly segment_means_seq_len tokens: no trace is dynamic
    ("nystromformer", "*", "*"): "ONNX export of .* failed",
    # the token head drifts 0.5 % of the logit range from PyTorch (sequence logits and embeddings match)
    ("modernbert", "token", "*"): "differs from pytorch",
    # TVM's Relax importer cannot infer a static shape through XLM's embeddings
    ("xlm", "*", "tvm"): "TVM cannot import the model at shapes",
    # TVM's convolution kernels drift 0.1-0.8 % from ONNX Runtime on ConvBERT's span convolution
    ("convbert", "token", "tvm"): "TVM differs from onnxruntime",
    ("convbert", "encoder", "tvm"): "TVM differs from onnxruntime",
}

# (family, task, backend) glob -> why it fails today
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}

# family -> fragment of the reason structured pruning refuses it
PRUNE_REFUSED: dict[str, str] = {
    "deberta": "no separate Q/K/V Linear projections",  # one fused in_proj
    "modernbert": "no separate Q/K/V Linear projections",  # fused Wqkv, gated FFN
    "funnel": "no separate Q/K/V Linear projections",  # q_head/k_head with per-head biases
    "squeezebert": "no separate Q/K/V Linear projections",  # grouped 1x1 convolutions
    "convbert": "is not an attention output projection",  # span-based dynamic convolution beside attention
    "mobilebert": "do not sit together in one layer module",  # bottlenecks and stacked FFNs
    "nomic_bert": "do not sit together in one layer module",  # fused Wqkv, gated FFN
    "eurobert": "is not an attention output projection",  # gated FFN, grouped-query attention
    "xlm": "do not sit together in one layer module",  # attentions and FFNs in separate lists
    "nystromformer": "the cut model fails",  # it runs only sequences of segment_means_seq_len tokens
}


def lookup(table: dict, family: str, task: str, backend: str) -> str | None:
    for (f, t, b), value in table.items():
        if fnmatch(family, f) and fnmatch(task, t) and fnmatch(backend, b):
            return value
    return None
