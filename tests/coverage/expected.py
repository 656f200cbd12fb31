"""What the coverage matrix expects of each cell that is not plainly supported.

UNSUPPORTED: the compile must refuse with one error line containing this text (the README shows the
user's line). KNOWN_BUGS: strict expected failures, fixed on another branch (the merge flips them)."""

from __future__ import annotations

from fnmatch import fnmatch

# (family, task, backend) glob -> a fragment of the one-line error the compile raises
UNSUPPORTED: dict[tuple[str, str, str], str] = {
    # the sequence classifier's global attention on [CLS] sizes tensors by data (nonzero)
    ("longformer", "sequence", "*"): "global attention .* sizes tensors by the data",
    # the attention mask's global positions are set through a boolean index (NonZero + ScatterND),
    # whose size TVM's importer cannot know
    ("longformer", "*", "tvm"): "TVM cannot import the model at shapes .*ScatterND",
    # Funnel pools neighbouring tokens, so padding changes every token's output (the [CLS] logits survive
    # it): the compile's padding check finds it, and TVM pads every call to its bucket
    ("funnel", "token", "tvm"): "changes with the padding around it",
    ("funnel", "encoder", "tvm"): "changes with the padding around it",
    # Nyströmformer (landmarks and a depthwise convolution over padded positions) and ConvBERT (its span
    # convolution) do not mask padding: the compile's padding check finds it, and TVM pads every call
    # to its bucket (where the check passes for a task, the bucket's padding still moves the outputs)
    ("nystromformer", "*", "tvm"): "changes with the padding around it|TVM differs from onnxruntime",
    ("convbert", "*", "tvm"): "changes with the padding around it|TVM differs from onnxruntime",
}

# (family, task, backend) glob -> why it fails today
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}

# family -> fragment of the reason structured pruning refuses it
PRUNE_REFUSED: dict[str, str] = {
    "deberta": "no separate Q/K/V Linear projections",  # one fused in_proj
    "modernbert": "no separate Q/K/V Linear projections",  # fused Wqkv, gated FFN
    "squeezebert": "no separate Q/K/V Linear projections",  # grouped 1x1 convolutions
    "convbert": "is not an attention output projection",  # span-based dynamic convolution beside attention
    "mobilebert": "do not sit together in one layer module",  # bottlenecks and stacked FFNs
    "nomic_bert": "do not sit together in one layer module",  # fused Wqkv, gated FFN
    "eurobert": "is not an attention output projection",  # gated FFN, grouped-query attention
    "xlm": "do not sit together in one layer module",  # attentions and FFNs in separate lists
}


def lookup(table: dict, family: str, task: str, backend: str) -> str | None:
    for (f, t, b), value in table.items():
        if fnmatch(family, f) and fnmatch(task, t) and fnmatch(backend, b):
            return value
    return None
