"""The Python API's arguments of the wrong type or value: one edgekiln error naming the argument, never a
raw TypeError or pydantic report, and nothing replaced."""

from __future__ import annotations

import json

import pytest

from edgekiln.compiler import CompileError, Recipe, compile
from edgekiln.runtime import InputError, load


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(output=None), "output: expected the artifact folder's path, found None"),
        (dict(target=None), "target: expected a profile name"),
        (dict(force="no"), "force: expected True or False, found 'no'"),
        (dict(recipe=42), "recipe: expected a Recipe, a mapping of its sections or a recipe file, found int"),
        (dict(recipe={"quantise": {"mode": "static"}}), "unknown setting `quantise`"),
    ],
)
def test_compile_arguments_are_checked(bert_folders, artifacts, tmp_path, arguments, message):
    before = json.loads((artifacts["sequence"] / "manifest.json").read_text())
    settings = {"target": "x86-64-avx2", "output": artifacts["sequence"], **arguments}
    with pytest.raises(CompileError, match=message):
        compile(bert_folders["sequence"], **settings)
    assert json.loads((artifacts["sequence"] / "manifest.json").read_text()) == before  # nothing replaced


def test_a_recipe_may_be_a_mapping_or_a_file(bert_folders, artifacts, tmp_path):
    stored = artifacts["sequence"] / "recipe.toml"
    built = compile(bert_folders["sequence"], "x86-64-avx2", tmp_path / "a", str(stored))
    again = compile(bert_folders["sequence"], "x86-64-avx2", tmp_path / "b", Recipe.from_file(stored).model_dump())
    assert built.manifest.artifact_id == again.manifest.artifact_id == load(artifacts["sequence"]).manifest.artifact_id


def test_recipe_constructor_errors_name_the_setting():
    with pytest.raises(CompileError, match="unknown setting `quantise`"):
        Recipe(quantise={"mode": "static"})
    with pytest.raises(CompileError, match="invalid `precision` 'fp64'"):
        Recipe(precision="fp64")


def test_runtime_arguments_are_checked(artifacts):
    with pytest.raises(InputError, match="load: expected an artifact folder's path, found None"):
        load(None)
    session = load(artifacts["sequence"])
    for bad in (None, {"text": "a"}):
        with pytest.raises(InputError, match="predict: expected a text or a list of items"):
            session.predict(bad)


def test_example_inputs_are_checked(bert_folders, tmp_path):
    import torch

    with pytest.raises(CompileError, match="example_inputs are for a torch.nn.Module"):
        compile(bert_folders["sequence"], "x86-64-avx2", tmp_path / "a", example_inputs=torch.zeros(1, 4))
    net = torch.nn.Linear(4, 2)
    with pytest.raises(CompileError, match=r"Linear fails on example_inputs \(input_0 \[2, 15\]\)"):
        compile(net, "x86-64-avx2", tmp_path / "b", example_inputs=torch.zeros(2, 15))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
