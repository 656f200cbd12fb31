"""Text to tensors, exactly as the manifest says (tokenizers only: no transformers on the device)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import ArtifactError, InputError
from .manifest import TensorSpec, TokenizerSpec
from .paths import inside

# Tokenizer outputs a manifest may route to a model input.
_FIELDS = {
    "ids": lambda enc: enc.ids,
    "attention_mask": lambda enc: enc.attention_mask,
    "type_ids": lambda enc: enc.type_ids,
}


class TextEncoder:
    def __init__(self, folder: Path, spec: TokenizerSpec, inputs: Sequence[TensorSpec]) -> None:
        from tokenizers import Tokenizer

        path = inside(folder, spec.file)
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise ArtifactError(f"cannot read tokenizer {spec.file}: {exc}", hint="recompile the artifact") from None
        tokenizer.enable_truncation(max_length=spec.max_length)
        tokenizer.enable_padding(pad_id=spec.pad_id, pad_token=spec.pad_token)
        self._tokenizer = tokenizer
        self._spec = spec
        dtypes = {tensor.name: tensor.dtype for tensor in inputs}
        unknown = [field for field in spec.feeds.values() if field not in _FIELDS]
        if unknown or set(spec.feeds) != set(dtypes):
            raise ArtifactError(
                f"manifest tokenizer feeds {spec.feeds} do not match the model inputs {sorted(dtypes)}",
                hint="recompile the artifact",
            )
        self._dtypes = dtypes

    @property
    def max_length(self) -> int:
        return self._spec.max_length

    def encode(self, texts: Sequence[str]) -> tuple[dict[str, np.ndarray], list]:
        texts = check_texts(texts)
        encodings = self._tokenizer.encode_batch(list(texts))
        return self._feeds(encodings), encodings

    def _feeds(self, encodings: list) -> dict[str, np.ndarray]:
        return {
            name: np.asarray([_FIELDS[field](enc) for enc in encodings], dtype=self._dtypes[name])
            for name, field in self._spec.feeds.items()
        }

    def cut(self, texts: Sequence[str]) -> list[bool]:
        """Per text, whether it holds more tokens than the model's longest input (then only the first
        `max_length` reach the model)."""
        return [bool(encoding.overflowing) for encoding in self._tokenizer.encode_batch(list(check_texts(texts)))]

    def encode_words(self, sentences: Sequence[Sequence[str]]) -> tuple[dict[str, np.ndarray], list]:
        """Encode pre-split words (token-classification data); `word_ids` map sub-tokens back."""
        encodings = self._tokenizer.encode_batch([list(words) for words in sentences], is_pretokenized=True)
        return self._feeds(encodings), encodings

    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()


def check_texts(texts: Sequence[str] | str) -> list[str]:
    if isinstance(texts, str):
        return [texts]
    texts = list(texts)
    if not texts:
        raise InputError("no texts given", hint="pass at least one string")
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise InputError(f"texts must be strings; item {bad[0]} is a {type(texts[bad[0]]).__name__}")
    return texts
