"""Dataset loaders: every format, splits, and one clear error per kind of bad data."""

from __future__ import annotations

import json

import pytest

from edgekiln.compiler.data import DataError, DataFormat, Dataset, DataTask, TextExample, load_dataset, split_off
from edgekiln.compiler.data.conll import to_bio

from .conftest import SHARED_DATA

needs_shared = pytest.mark.skipif(
    not SHARED_DATA.is_dir(), reason=f"real data not found at {SHARED_DATA} (a clone without ../shared)"
)


def test_tsv_with_default_columns(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text('sentence\tlabel\nit \'s "fine" \t1\n\nbad movie\t0\n')
    data = load_dataset(path)
    assert data.task is DataTask.TEXT_CLASSIFICATION and data.labels == ("0", "1")
    assert data.examples[0].text == 'it \'s "fine"' and len(data) == 2


def test_csv_and_jsonl_with_named_columns(tmp_path):
    (tmp_path / "d.csv").write_text('id,review,stars\n1,"good, really",5\n2,meh,2\n')
    data = load_dataset(tmp_path / "d.csv", label_column="stars")
    assert [(e.text, e.label) for e in data.examples] == [("good, really", "5"), ("meh", "2")]
    (tmp_path / "d.jsonl").write_text(
        json.dumps({"text": "yes", "label": 1}) + "\n\n" + json.dumps({"text": "no", "label": 0}) + "\n"
    )
    assert load_dataset(tmp_path / "d.jsonl").labels == ("0", "1")


def test_conll_whitespace_separators_and_iob1(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("John\tI-person\nSmith\tI-person\nwent\tO\n\t\nParis\tI-location\n   \nB\tB-person\n")
    data = load_dataset(path)
    assert data.task is DataTask.TOKEN_CLASSIFICATION and len(data) == 3
    assert data.examples[0].tags == ("B-person", "I-person", "O")
    assert data.examples[1].tags == ("B-location",)
    assert to_bio(["I-x", "I-x", "B-x", "I-y", "O", "I-y"]) == ("B-x", "I-x", "B-x", "B-y", "O", "B-y")


def test_folder_splits_and_seeded_fraction(tmp_path):
    (tmp_path / "train.tsv").write_text("text\tlabel\n" + "".join(f"t{i}\t{i % 2}\n" for i in range(20)))
    (tmp_path / "dev.tsv").write_text("text\tlabel\na\t0\n")
    assert len(load_dataset(f"{tmp_path}:validation")) == 1  # dev and validation are aliases
    train = load_dataset(f"{tmp_path}:train")
    rest, held = split_off(train, 0.25, seed=3)
    assert len(held) == 5 and len(rest) == 15
    assert not {e.text for e in held.examples} & {e.text for e in rest.examples}
    assert split_off(train, 0.25, seed=3)[1].examples == held.examples
    with pytest.raises(DataError, match="no test file"):
        load_dataset(f"{tmp_path}:test")
    with pytest.raises(DataError, match="choose a split file"):
        load_dataset(tmp_path)


def test_the_held_out_split_keeps_every_label_in_training_and_its_share_in_both():
    examples = tuple(TextExample(f"t{i}", "pos" if i % 3 else "neg") for i in range(200))
    data = Dataset(DataTask.TEXT_CLASSIFICATION, (*examples, TextExample("odd one", "rare")), "d.tsv")
    for seed in range(40):  # a plain permutation held the single "rare" example out for 4 of these seeds
        rest, held = split_off(data, 0.1, seed)
        assert "rare" in rest.labels and len(held) == 20 and len(rest) == 181
        assert sorted(e.label for e in held.examples).count("neg") == 7  # 67 of 201 negatives: 6.67 of 20
    tiny = Dataset(DataTask.TEXT_CLASSIFICATION, tuple(TextExample(t, t[0]) for t in ("pa", "pb", "nc", "nd")), "t")
    for seed in range(10):
        rest, held = split_off(tiny, 0.5, seed)
        assert rest.labels == held.labels == ("n", "p")


def test_saved_datasets_folder(tmp_path):
    datasets = pytest.importorskip("datasets")
    features = datasets.Features(
        {"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    split = datasets.Dataset.from_dict({"sentence": ["good", "bad"], "label": [1, 0]}, features=features)
    datasets.DatasetDict({"train": split, "validation": split}).save_to_disk(str(tmp_path / "ds"))
    data = load_dataset(f"{tmp_path / 'ds'}:train")
    assert [(e.text, e.label) for e in data.examples] == [("good", "pos"), ("bad", "neg")]
    with pytest.raises(DataError, match=r"holds splits \['train', 'validation'\]"):
        load_dataset(tmp_path / "ds")
    tags = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-loc"])),
        }
    )
    datasets.Dataset.from_dict({"tokens": [["in", "Rome"]], "ner_tags": [[0, 1]]}, features=tags).save_to_disk(
        str(tmp_path / "ner")
    )
    assert load_dataset(tmp_path / "ner").examples[0].tags == ("O", "B-loc")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.tsv", "", "empty.tsv is empty"),
        ("header.tsv", "sentence\tlabel\n", "holds no examples"),
        ("cols.tsv", "body\tstars\nx\t1\n", "no text column.*body, stars"),
        ("width.tsv", "sentence\tlabel\nx\t1\ty\n", "width.tsv:2: expected 2 columns, found 3"),
        ("bad.jsonl", '{"text": "a", "label": 1}\n{oops\n', "bad.jsonl:2: not valid JSON"),
        ("bad.conll", "a\tO\nb\tO\textra\n", "bad.conll:2: expected 2 whitespace-separated columns"),
        ("tags.conll", "a\tPER\n", "tags.conll:1: tag 'PER' is not O, B-TYPE or I-TYPE"),
        ("data.parquet", "x", "cannot tell the format"),
        ("null.jsonl", '{"text": "a", "label": 1}\n{"text": "b", "label": null}\n', "null.jsonl:2: 'label' must be"),
        ("bool.jsonl", '{"text": "a", "label": true}\n', "bool.jsonl:1: 'label' must be a class name or number"),
        ("list.jsonl", '{"text": "a", "label": [1]}\n', r"found \[1\]"),
        ("blank.tsv", "sentence\tlabel\ngood\tpos\n   \tneg\n", "blank.tsv:3: empty text"),
        ("blank.jsonl", '{"text": "", "label": 1}\n', "blank.jsonl:1: empty text"),
        ("twice.tsv", "sentence\tlabel\tlabel\nx\tpos\tneg\n", "twice.tsv has 2 columns named 'label'"),
        ("twice.csv", "text,text,label\nx,y,pos\n", "twice.csv has 2 columns named 'text'"),
    ],
)
def test_bad_data_names_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path / name)


def test_split_of_a_file_and_missing_path(tmp_path):
    (tmp_path / "a.tsv").write_text("text\tlabel\nx\t1\n")
    with pytest.raises(DataError, match="selects a split only in a folder"):
        load_dataset(f"{tmp_path / 'a.tsv'}:train")
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(tmp_path / "missing.tsv")


@needs_shared
def test_real_sst2_and_wnut17_load_as_published():
    validation = load_dataset(SHARED_DATA / "sst2" / "validation.tsv")
    assert len(validation) == 872
    assert sum(e.label == "1" for e in validation.examples) == 444
    train = load_dataset(f"{SHARED_DATA / 'wnut17'}:train")  # separators include tab-only lines
    assert len(train) == 3394
    assert {label[2:] for label in train.labels if label != "O"} == {
        "person",
        "location",
        "group",
        "creative-work",
        "corporation",
        "product",
    }
    assert len(load_dataset(f"{SHARED_DATA / 'wnut17'}:test")) == 1287


CONLL_2003 = """-DOCSTART- -X- -X- O

EU NNP B-NP I-ORG
rejects VBZ B-VP O
German JJ B-NP I-MISC
call NN I-NP O
. . O O

Peter NNP B-NP I-PER
Blackburn NNP I-NP I-PER

"""


def test_conll2003_files_are_recognised_by_their_content(tmp_path):
    for name in ("eng.train", "eng.testa", "eng.testb"):
        (tmp_path / name).write_text(CONLL_2003)
    data = load_dataset(tmp_path / "eng.train")
    assert data.task is DataTask.TOKEN_CLASSIFICATION and len(data) == 2
    assert data.examples[0].tokens == ("EU", "rejects", "German", "call", ".")
    assert data.examples[0].tags == ("B-ORG", "O", "B-MISC", "O", "O")  # IOB1 -> BIO
    assert data.examples[1].tags == ("B-PER", "I-PER")
    assert load_dataset(f"{tmp_path}:testa").source == str(tmp_path / "eng.testa")  # the folder's splits too
    assert len(load_dataset(f"{tmp_path}:train", task=DataTask.TOKEN_CLASSIFICATION)) == 2


def test_content_sniffing_and_a_forced_format(tmp_path):
    (tmp_path / "reviews.dat").write_text("sentence\tlabel\ngood\t1\nbad\t0\n")
    assert load_dataset(tmp_path / "reviews.dat").labels == ("0", "1")
    (tmp_path / "reviews.data").write_text('text,label\n"good, really",1\n')
    assert load_dataset(tmp_path / "reviews.data").examples[0].text == "good, really"
    (tmp_path / "records").write_text(json.dumps({"text": "fine", "label": "pos"}) + "\n")
    assert load_dataset(tmp_path / "records").labels == ("pos",)
    (tmp_path / "table.txt").write_text("sentence\tlabel\ngood\t1\n")  # .txt reads as CoNLL unless told
    with pytest.raises(DataError, match="table.txt:1: tag 'label' is not O"):
        load_dataset(tmp_path / "table.txt")
    assert load_dataset(tmp_path / "table.txt", format="tsv").examples[0].label == "1"
    assert load_dataset(f"{tmp_path / 'records'}", format=DataFormat.JSONL).task is DataTask.TEXT_CLASSIFICATION
    with pytest.raises(DataError, match="unknown data format 'parquet'.*tsv, csv, jsonl, conll, hf-disk"):
        load_dataset(tmp_path / "records", format="parquet")
    with pytest.raises(DataError, match="hf-disk format is a folder"):
        load_dataset(tmp_path / "records", format="hf-disk")
    (tmp_path / "words").write_text("just some words\n")
    with pytest.raises(DataError, match="cannot tell the format of .*words.*--data-format"):
        load_dataset(tmp_path / "words")


@pytest.mark.parametrize(
    "name, body",
    [
        ("long.tsv", "sentence\tlabel\nshort\t1\n" + "x" * 200_000 + "\t0\n"),
        ("long.csv", 'sentence,label\nshort,1\n"unclosed quote,0\n' + "more text,1\n" * 20_000),
    ],
)
def test_a_field_over_128_kib_is_one_clear_error(tmp_path, name, body):
    (tmp_path / name).write_text(body)
    with pytest.raises(DataError, match=rf"{name}:\d+: a (TSV|CSV) field is longer than 128 KiB"):
        load_dataset(tmp_path / name)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("bom.csv", "text,label\ngood,1\nbad,0\n"),
        ("bom.tsv", "sentence\tlabel\ngood\t1\nbad\t0\n"),
        ("bom.jsonl", '{"text": "good", "label": 1}\n{"text": "bad", "label": 0}\n'),
        ("bom.conll", "good\tO\nParis\tB-location\n"),
    ],
)
def test_a_byte_order_mark_is_read_as_excel_writes_it(tmp_path, name, content):
    """Excel's "CSV UTF-8" starts the file with a byte-order mark: read as the same data without it."""
    plain, marked = tmp_path / name, tmp_path / f"marked-{name}"
    plain.write_text(content, encoding="utf-8")
    marked.write_text(content, encoding="utf-8-sig")
    assert marked.read_bytes().startswith(b"\xef\xbb\xbf")
    assert load_dataset(marked).examples == load_dataset(plain).examples


def test_length_grouped_batches_stay_grouped_when_the_last_one_is_short():
    import numpy as np

    from edgekiln.compiler.finetune.batches import epoch_order

    lengths = np.arange(37) % 7 + 1  # five batches of 8, the last one 5 long
    for seed in range(5):
        order = epoch_order(lengths, 8, seed, epoch=1)
        assert sorted(order.tolist()) == list(range(37))
        batches = [lengths[order[i : i + 8]] for i in range(0, 37, 8)]
        assert len(batches[-1]) == 5  # the short batch comes last, so slicing again gives the same batches
        assert all(batch.max() - batch.min() <= 2 for batch in batches)  # similar lengths in each


def test_the_held_out_split_takes_its_full_size_from_labels_with_room():
    big = tuple(TextExample(f"a{i}", "A") for i in range(100))
    singles = tuple(TextExample(f"s{i}", f"L{i}") for i in range(10))
    rest, held = split_off(Dataset(DataTask.TEXT_CLASSIFICATION, big + singles, "d"), 0.5, 0)
    assert len(held) == 55 and all(label in rest.labels for label in ("A", *(f"L{i}" for i in range(10))))
    lonely = Dataset(DataTask.TEXT_CLASSIFICATION, tuple(TextExample(f"t{i}", f"L{i}") for i in range(5)), "one.tsv")
    with pytest.raises(DataError, match="one.tsv: every label has a single example"):
        split_off(lonely, 0.2, 0)
