"""Image datasets: class folders (and their splits), unlabelled folders, CSV/TSV of paths; bad layouts
are one DataError naming the file or folder. The runtime decodes images without importing torch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgekiln.compiler.data import DataError, DataTask, load_dataset, split_off

from .image_helpers import photo, photos

pytest.importorskip("PIL")


def _folder(root, layout):
    for label, names in layout.items():
        (root / label).mkdir(parents=True)
        for name in names:
            shutil.copy(photo(name), root / label / name)
    return root


def test_class_folders_and_their_splits(tmp_path):
    _folder(tmp_path / "data" / "train", {"cat": ["chelsea.png"], "rocket": ["rocket.jpg", "coffee.png"]})
    _folder(tmp_path / "data" / "val", {"cat": ["astronaut.png"]})
    train = load_dataset(f"{tmp_path / 'data'}:train")
    assert train.task is DataTask.IMAGE_CLASSIFICATION and train.labels == ("cat", "rocket")
    assert [(os.path.basename(e.path), e.label) for e in train.examples] == [
        ("chelsea.png", "cat"),
        ("coffee.png", "rocket"),
        ("rocket.jpg", "rocket"),
    ]
    assert len(load_dataset(f"{tmp_path / 'data'}:val")) == 1
    rest, held = split_off(train, 1 / 3, seed=0)
    assert len(rest) == 2 and len(held) == 1


def test_a_class_folders_sub_folders_are_read_as_imagefolder_does(tmp_path):
    root = _folder(tmp_path / "data", {"cat": ["chelsea.png"], "rocket": ["rocket.jpg"]})
    (root / "cat" / "batch2").mkdir()
    shutil.copy(photo("coffee.png"), root / "cat" / "batch2" / "coffee.png")
    (root / "cat" / ".cache").mkdir()
    shutil.copy(photo("astronaut.png"), root / "cat" / ".cache" / "hidden.png")
    data = load_dataset(str(root))
    assert sorted((e.label, e.path.split("/")[-1]) for e in data.examples) == [
        ("cat", "chelsea.png"),
        ("cat", "coffee.png"),
        ("rocket", "rocket.jpg"),
    ]
    only_nested = _folder(tmp_path / "nested", {"b": ["rocket.jpg"]})
    (only_nested / "a" / "sub").mkdir(parents=True)
    shutil.copy(photo("chelsea.png"), only_nested / "a" / "sub" / "cat.png")
    assert load_dataset(str(only_nested)).labels == ("a", "b")  # class a was lost before


def test_linked_folders_in_a_class_are_followed_once(tmp_path):
    """As torchvision's ImageFolder (os.walk followlinks=True); a link loop ends."""
    root = _folder(tmp_path / "data", {"cat": ["chelsea.png"], "rocket": ["rocket.jpg"]})
    elsewhere = _folder(tmp_path / "more", {"shots": ["coffee.png", "astronaut.png"]})
    (root / "cat" / "linked").symlink_to(elsewhere / "shots", target_is_directory=True)
    (elsewhere / "shots" / "loop").symlink_to(elsewhere / "shots", target_is_directory=True)
    data = load_dataset(str(root))
    assert sorted(e.path.split("/")[-1] for e in data.examples if e.label == "cat") == [
        "astronaut.png",
        "chelsea.png",
        "coffee.png",
    ]


def test_an_image_table_with_a_byte_order_mark(tmp_path):
    shutil.copy(photo("chelsea.png"), tmp_path / "cat.png")
    (tmp_path / "images.csv").write_text("path,label\ncat.png,cat\n", encoding="utf-8-sig")
    data = load_dataset(str(tmp_path / "images.csv"))
    assert data.task is DataTask.IMAGE_CLASSIFICATION and data.examples[0].label == "cat"


def test_an_image_replaced_under_the_same_name_is_new_data(tmp_path):
    """Cache keys (pruning, calibration) hash image files' contents, not only their names."""
    _folder(tmp_path / "data", {"cat": ["chelsea.png"], "rocket": ["rocket.jpg"]})
    before = load_dataset(tmp_path / "data").fingerprint()
    assert load_dataset(tmp_path / "data").fingerprint() == before
    shutil.copy(photo("coffee.png"), tmp_path / "data" / "cat" / "chelsea.png")
    assert load_dataset(tmp_path / "data").fingerprint() != before


def test_an_unlabelled_folder(tmp_path):
    for path in photos()[:3]:
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "notes.txt").write_text("not an image")
    dataset = load_dataset(tmp_path)
    assert len(dataset) == 3 and {e.label for e in dataset.examples} == {""}


def test_a_tsv_of_paths_relative_to_itself(tmp_path):
    _folder(tmp_path / "img", {"cat": ["chelsea.png"]})
    table = tmp_path / "list.tsv"
    table.write_text("image\tclass\nimg/cat/chelsea.png\tcat\n\n")
    dataset = load_dataset(table)
    assert [(e.path, e.label) for e in dataset.examples] == [(str(tmp_path / "img/cat/chelsea.png"), "cat")]


def test_a_text_csv_is_still_text(tmp_path):
    table = tmp_path / "text.csv"
    table.write_text("text,label\na good film,positive\n")
    assert load_dataset(table).task is DataTask.TEXT_CLASSIFICATION


@pytest.mark.parametrize(
    "content, message",
    [
        ("path,label\nmissing.png,cat\n", "line 2: image .*missing.png does not exist"),
        ("path,label\nimg/cat.png,cat\nimg,cat\n", "line 3: image .*img is a folder"),
        ("path,label\nx.png\n", "line 2 has 1 fields, its header 2"),
        ("path,label\n", "lists no images"),
        ("picture,cls\nimg/cat.png,cat\n", "lists image files in column 'picture'; an image table names"),
    ],
)
def test_bad_tables_are_one_error(tmp_path, content, message):
    (tmp_path / "img").mkdir()
    shutil.copy(photo("chelsea.png"), tmp_path / "img" / "cat.png")
    table = tmp_path / "images.csv"
    table.write_text(content)
    with pytest.raises(DataError, match=message):
        load_dataset(table)


def test_text_that_names_an_image_file_is_still_text(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("text,label\nmy favourite meme is doge.png,pos\nplain,neg\n")
    assert load_dataset(table).task is DataTask.TEXT_CLASSIFICATION


def test_split_folders_given_without_a_split_are_one_error(tmp_path):
    for split in ("train", "validation"):
        _folder(tmp_path / "imgs" / split, {"cat": ["chelsea.png"], "rocket": ["rocket.jpg"]})
    with pytest.raises(DataError, match=r"holds the image splits \['train', 'validation'\]") as error:
        load_dataset(tmp_path / "imgs")
    assert error.value.hint.endswith("imgs:train")
    assert load_dataset(f"{tmp_path / 'imgs'}:train").labels == ("cat", "rocket")


def test_a_folder_without_images_is_one_error(tmp_path):
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "readme.md").write_text("nothing here")
    with pytest.raises(DataError, match="holds no images"):
        load_dataset(tmp_path, format="image-folder")


def test_data_that_is_not_there_says_what_data_is(tmp_path):
    """An empty folder, a folder of other files, one image, or an image folder asked for a missing split:
    each was met with advice for text splits (FOLDER:SPLIT, or name it .tsv)."""
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty is empty: no images, no split files"):
        load_dataset(tmp_path / "empty")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.md").write_text("nothing here")
    with pytest.raises(DataError, match="holds readme.md: no images"):
        load_dataset(tmp_path / "notes")
    with pytest.raises(DataError, match="is one image; image data is a folder of them"):
        load_dataset(photo("chelsea.png"))
    folder = _folder(tmp_path / "pets", {"cat": ["chelsea.png"], "dog": ["astronaut.png"]})
    with pytest.raises(DataError, match="its SPLIT is a sub-folder"):
        load_dataset(f"{folder}:train")


def test_the_runtime_decodes_and_predicts_without_torch(tmp_path):
    """A runtime process that runs an image artifact never imports torch or transformers."""
    from edgekiln.compiler import Recipe, compile

    from .image_helpers import make_image_folder

    folder = make_image_folder(tmp_path / "vit", "vit")
    art = compile(folder, "host", tmp_path / "art", Recipe.from_flags(backend="onnxruntime")).path
    script = (
        "import sys\nfrom edgekiln.runtime import load\n"
        "print(load(sys.argv[1]).predict([sys.argv[2]], top=2)[0].label)\n"
        "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(art), str(photo("chelsea.png"))], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().startswith(("cat", "coffee", "rocket", "astronaut", "other"))


def test_a_datasets_folder_with_an_image_column(tmp_path, monkeypatch):
    """`save_to_disk` of an Image column and a ClassLabel: the images are written once, by content, to
    the cache, and read like an image folder's; "dev" finds the "validation" split."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("EDGEKILN_CACHE", str(tmp_path / "cache"))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "rocket"])})
    rows = {"image": [str(photo("chelsea.png")), str(photo("rocket.jpg"))], "label": [0, 1]}
    splits = datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict(rows, features=features),
            "validation": datasets.Dataset.from_dict(rows, features=features),
        }
    )
    splits.save_to_disk(str(tmp_path / "saved"))
    data = load_dataset(f"{tmp_path / 'saved'}:dev")
    assert data.task is DataTask.IMAGE_CLASSIFICATION and data.source.endswith(":validation")
    assert [e.label for e in data.examples] == ["cat", "rocket"]
    written = [Path(e.path) for e in data.examples]
    assert [p.suffix for p in written] == [".png", ".jpg"] and all(
        p.parent.parent == tmp_path / "cache" for p in written
    )
    assert written[0].read_bytes() == photo("chelsea.png").read_bytes()
    again = load_dataset(f"{tmp_path / 'saved'}:train")
    assert [e.path for e in again.examples] == [e.path for e in data.examples]  # the same bytes, the same file
    test = datasets.Dataset.from_dict({**rows, "label": [-1, 0]}, features=features)  # -1: no label
    test.save_to_disk(str(tmp_path / "test"))
    assert [e.label for e in load_dataset(tmp_path / "test").examples] == ["", "cat"]


def test_column_flags_apply_where_there_are_columns(tmp_path):
    _folder(tmp_path / "data", {"cat": ["chelsea.png"], "rocket": ["rocket.jpg"]})
    with pytest.raises(DataError, match="--label-column names a table's column; .* is an image folder"):
        load_dataset(tmp_path / "data", label_column="kind")
    table = tmp_path / "list.csv"
    table.write_text("path,label,kind\ndata/cat/chelsea.png,cat,animal\n")
    assert load_dataset(table, label_column="kind").examples[0].label == "animal"
    with pytest.raises(DataError, match="has no label column 'species'"):
        load_dataset(table, label_column="species")
    conll = tmp_path / "tags.conll"
    conll.write_text("Paris\tB-location\n")
    with pytest.raises(DataError, match="--text-column and --label-column name table columns"):
        load_dataset(conll, text_column="words", label_column="tags")
