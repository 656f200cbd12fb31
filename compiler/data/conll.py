"""CoNLL-style token/tag files: one `token<whitespace>...<whitespace>tag` per line, sentences
separated by empty or whitespace-only lines. IOB1 tags are normalised to BIO (IOB2)."""

from __future__ import annotations

from pathlib import Path

from .types import DataError, Dataset, DataTask, TokenExample


def read_conll(path: Path) -> Dataset:
    sentences: list[TokenExample] = []
    tokens: list[str] = []
    tags: list[str] = []
    width = None
    with open(path, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                if tokens:
                    sentences.append(TokenExample(tuple(tokens), to_bio(tags)))
                    tokens, tags = [], []
                continue
            if line.startswith("-DOCSTART-"):
                continue
            fields = line.split()
            width = width or len(fields)
            if len(fields) != width or width < 2:
                raise DataError(
                    f"{path}:{number}: expected {max(width, 2)} whitespace-separated columns "
                    f"(token ... tag), found {len(fields)}: {line.strip()[:60]!r}"
                )
            tag = fields[-1]
            if tag != "O" and not (len(tag) > 2 and tag[:2] in ("B-", "I-")):
                raise DataError(f"{path}:{number}: tag {tag!r} is not O, B-TYPE or I-TYPE")
            tokens.append(fields[0])
            tags.append(tag)
    if tokens:
        sentences.append(TokenExample(tuple(tokens), to_bio(tags)))
    if not sentences:
        raise DataError(f"{path} holds no sentences")
    return Dataset(DataTask.TOKEN_CLASSIFICATION, tuple(sentences), str(path))


def is_entity_tag(tag: str) -> bool:
    """B-X or I-X: a tag a model without it simply never predicts (its entities count as missed)."""
    return tag[:2] in ("B-", "I-") and len(tag) > 2


def to_bio(tags: list[str]) -> tuple[str, ...]:
    """IOB1 -> BIO: an I-X that does not continue an X entity starts one. BIO input is unchanged."""
    result = []
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and previous[2:] != tag[2:]:
            tag = "B-" + tag[2:]
        result.append(tag)
        previous = tag
    return tuple(result)
