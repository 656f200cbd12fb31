"""Hugging Face folders as users find them on the hub: weights saved in float16/bfloat16 compile to a
float32 artifact (transformers 5 kept the saved dtype and the export failed), and a folder that asks
for its own code (`auto_map`) is refused before anything loads it: its code is never run, and the
built-in class it names would compute another model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from edgekiln.cli.main import main
from edgekiln.compiler import Recipe, compile
from edgekiln.compiler.errors import CompileError
from edgekiln.runtime import load

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

EVIL = """
import pathlib
pathlib.Path(__file__).with_name("RAN").write_text("the folder's code ran")
from transformers import BertModel
class EvilModel(BertModel):
    pass
"""


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_weights_compile_to_a_float32_artifact(dtype, bert_folders, tmp_path):
    folder = tmp_path / dtype
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(bert_folders["sequence"]))
    model.to(getattr(torch, dtype)).save_pretrained(str(folder))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (bert_folders["sequence"] / name).is_file():
            shutil.copy(bert_folders["sequence"] / name, folder / name)
    assert json.loads((folder / "config.json").read_text()).get("dtype") == dtype
    result = compile(folder, "host", tmp_path / "art", Recipe.from_flags(backend="onnxruntime", cache=False))
    assert result.manifest.precision.value == "fp32"
    session = load(result.path)
    ids = np.array([[2, 11, 12, 13, 3]], np.int64)
    got = session.run({"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": ids * 0})["logits"]
    reference = model.float().eval()  # the saved weights, widened exactly
    with torch.inference_mode():
        expected = reference(input_ids=torch.from_numpy(ids)).logits.numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


def _with_own_code(source, folder, model_type="bert"):
    shutil.copytree(source, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type=model_type, auto_map={"AutoModelForSequenceClassification": "modeling_evil.EvilModel"})
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text(EVIL)
    return folder


@pytest.mark.parametrize("model_type", ["bert", "evilbert"])
def test_a_folder_asking_for_its_own_code_is_refused_and_its_code_never_runs(model_type, bert_folders, tmp_path):
    folder = _with_own_code(bert_folders["sequence"], tmp_path / "remote", model_type)
    with pytest.raises(
        CompileError,
        match=r"maps AutoModelForSequenceClassification to code of its own "
        r"\(modeling_evil\.py\); edgekiln runs no code",
    ):
        compile(folder, "host", tmp_path / "art", Recipe.from_flags(backend="onnxruntime", cache=False))
    assert not (folder / "RAN").exists() and not (tmp_path / "art").exists()


def test_finetune_and_eval_refuse_it_too(bert_folders, tmp_path, capsys):
    folder = _with_own_code(bert_folders["sequence"], tmp_path / "remote")
    data = tmp_path / "train.tsv"
    data.write_text("sentence\tlabel\n" + "".join(f"text {i}\t{'ab'[i % 2]}\n" for i in range(20)))
    assert main(["finetune", str(folder), "--data", str(data), "-o", str(tmp_path / "tuned")]) == 2
    assert main(["eval", str(folder), "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert err.count("to code of its own (modeling_evil.py)") == 2 and "Traceback" not in err
    assert not (folder / "RAN").exists()


@pytest.mark.parametrize(("family", "longest"), [("roberta", 65), ("mpnet", 64), ("bert", 64)])
def test_the_longest_input_is_what_the_position_table_holds(family, longest, tmp_path):
    """RoBERTa-style positions start after the padding id (pad 0 here: 66 rows hold 65 tokens; MPNet's
    padding id is 1 whatever the config says): a longer input crashed ONNX Runtime and OpenVINO."""
    from .coverage.families import make_family_folder

    folder = make_family_folder(tmp_path / family, family, "sequence")
    result = compile(folder, "host", tmp_path / "art", Recipe.from_flags(backend="onnxruntime", cache=False))
    session = load(result.path)
    assert session.manifest.tokenizer.max_length == longest
    text = " ".join(["the"] * 200)
    feeds, _ = session.encoder.encode([text])
    assert feeds["input_ids"].shape == (1, longest)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    with torch.inference_mode():
        expected = model(**{name: torch.from_numpy(value) for name, value in feeds.items()}).logits.numpy()
    np.testing.assert_allclose(session.run(feeds)["logits"], expected, atol=1e-4)


@pytest.mark.parametrize("family", ["nystromformer", "convbert"])
def test_a_model_whose_answers_change_with_padding_runs_one_text_per_call(family, tmp_path, artifacts):
    """Nyströmformer averages landmarks over padded positions and ConvBERT convolves into them: a text's
    score depended on the texts batched with it (0.98 beside a long text, 0.80 alone)."""
    from .coverage.families import make_family_folder

    folder = make_family_folder(tmp_path / family, family, "sequence")
    result = compile(folder, "host", tmp_path / "art", Recipe.from_flags(backend="onnxruntime", cache=False))
    padding = json.loads((result.path / "reports" / "verify_fidelity.json").read_text())["details"]["padding"]
    assert padding["sensitive"] and result.manifest.tokenizer.pad_sensitive
    session = load(result.path)
    short, long = "the film", " ".join(["a long and winding text"] * 8)
    together = session.predict([short, long, short])
    assert together[0].scores == session.predict([short])[0].scores == together[2].scores
    pytest.importorskip("starlette")
    from edgekiln.runtime.serve.models import ServedModel

    assert not ServedModel(family, session).pads_sequences  # serve merges only requests of equal length
    assert ServedModel("bert", load(artifacts["sequence"])).pads_sequences
    bert = json.loads((artifacts["sequence"] / "reports" / "verify_fidelity.json").read_text())["details"]["padding"]
    assert not bert["sensitive"] and bert["max_abs_diff"] < 1e-5
    assert not load(artifacts["sequence"]).manifest.tokenizer.pad_sensitive


def test_a_model_that_fails_in_pytorch_itself_is_blamed_not_the_exporters(bert_folders, tmp_path):
    """X-MOD's forward raises until code sets a language: both exporters failed, and the hint sent the
    user to --exporter and --opset, which cannot help."""
    from edgekiln.compiler import ExportError

    config = transformers.AutoConfig.for_model(
        "xmod", vocab_size=120, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=66, pad_token_id=0, languages=["en_XX", "de_DE"],
    )  # fmt: skip
    folder = tmp_path / "xmod"
    transformers.XmodForSequenceClassification(config).save_pretrained(str(folder))
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        if (bert_folders["sequence"] / name).is_file():
            shutil.copy(bert_folders["sequence"] / name, folder / name)
    with pytest.raises(ExportError, match="does not run in PyTorch on example inputs: .*language") as err:
        compile(folder, "host", tmp_path / "art", Recipe.from_flags(backend="onnxruntime", cache=False))
    assert "--exporter" not in str(err.value)


def test_own_code_nested_in_a_processor_config_or_named_in_modules_json_is_refused(bert_folders, tmp_path):
    from edgekiln.compiler.sources.remote_code import refuse_remote_code

    nested = tmp_path / "nested"
    shutil.copytree(bert_folders["sequence"], nested)
    (nested / "processor_config.json").write_text(
        json.dumps(
            {"image_processor": {"auto_map": {"AutoImageProcessor": {"pil": "proc.P", "torchvision": "proc.F"}}}}
        )
    )
    with pytest.raises(
        CompileError, match=r"maps AutoImageProcessor to code of its own \(proc\.py, not in the folder\)"
    ):
        refuse_remote_code(nested)
    hub = tmp_path / "hub"
    shutil.copytree(bert_folders["sequence"], hub)
    config = json.loads((hub / "config.json").read_text())
    (hub / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "owner/repo--modeling_x.Y"}}))
    with pytest.raises(CompileError, match=r"to code of its own \(modeling_x\.py of owner/repo\)"):
        refuse_remote_code(hub)
    custom = tmp_path / "custom"
    shutil.copytree(bert_folders["encoder"], custom)
    modules = json.loads((custom / "modules.json").read_text())
    modules[1]["type"] = "custom_st.Pooling"
    (custom / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(CompileError, match=r"declares modules of its own \(custom_st\.Pooling\)"):
        compile(custom, "host", tmp_path / "art", Recipe.from_flags(backend="onnxruntime", cache=False))
    refuse_remote_code(bert_folders["encoder"])  # sentence-transformers' own modules pass


def test_the_padding_check_judges_per_text_outputs_as_they_are_and_leaves_failures_to_fidelity():
    from edgekiln.compiler.padding_check import padding_effect

    ids = np.array([[5] * 17, [3] * 10 + [0] * 7])
    case = [(2, 17, {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int64)})]

    def averages_padding(feeds):  # [batch, 17] scores (17 labels, as long as the padded batch) that see padding
        return [np.repeat(feeds["input_ids"].astype(np.float32).mean(axis=1, keepdims=True), 17, axis=1)]

    effect = padding_effect(averages_padding, case)
    assert effect["sensitive"] and effect["padded_rows"] == 1

    def fails(feeds):
        raise RuntimeError("cannot run this shape")

    assert padding_effect(fails, case) is None
