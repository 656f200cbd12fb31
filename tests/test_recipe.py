"""The build recipe: typed sections, files in three formats, flag overrides, the cross-field rules as
one-line errors, and a stored recipe that rebuilds the same artifact through the CLI."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgekiln.cli.main import main
from edgekiln.compiler import CompileError, Recipe
from edgekiln.compiler.planning import plan_build
from edgekiln.compiler.recipe import FLAGS
from edgekiln.targets import TargetProfile, load_profile

FULL = Recipe.from_flags(
    task="text-classification",
    opset=17,
    quantize="static",
    calibration="/data/cal.tsv",
    calibration_samples=64,
    accuracy_budget=1.0,
    eval_data="/data/dev.tsv",
    backend="onnxruntime",
    prune_flops=0.4,
    recover_epochs=2,
    train_data="/data/train.tsv",
    cache=False,
)


@pytest.mark.parametrize("suffix", [".toml", ".json", ".yaml"])
def test_recipe_files_round_trip(tmp_path, suffix):
    path = FULL.save(tmp_path / f"recipe{suffix}")
    assert Recipe.from_file(path) == FULL
    assert Recipe.from_file(FULL.save(tmp_path / "defaults.toml")) == FULL  # overwrite is fine


def test_flags_override_a_base_and_tables_merge():
    base = Recipe.from_flags(backend="tvm", tune_trials=8, recover_epochs=3, prune_flops=0.3)
    merged = Recipe.from_flags(base, sequence_buckets=(16, 32), recover_lora=True)
    assert merged.backend.options == {"tune_trials": 8, "sequence_buckets": [16, 32]}
    assert merged.recover.epochs == 3 and merged.recover.lora and merged.prune.flops == 0.3
    assert merged.with_overrides({"quantize.mode": "dynamic"}).quantize.mode.value == "dynamic"


@pytest.mark.parametrize(
    "flags, message",
    [
        (dict(quantize="static"), "--quantize static needs calibration data"),
        (dict(quantize="dynamic", accuracy_budget=1.0), "needs labelled data"),
        (dict(recover_epochs=1), "--recover fine-tunes after pruning"),
        (dict(precision="bf16", quantize="dynamic"), "does not combine with --quantize"),
        (dict(precision="int8"), "not a float precision"),
        (dict(tune_trials=4), "need a backend"),
        (dict(opset=3), "invalid `export.opset` 3"),
        (dict(quantize="int4"), "invalid `quantize.mode` 'int4'"),
        (dict(prune_flops=1.5), "--prune-flops must be a fraction"),
    ],
)
def test_cross_field_rules_are_one_line_errors(flags, message):
    with pytest.raises(CompileError, match=message):
        Recipe.from_flags(**flags)


def test_unknown_settings_and_bad_files_are_named(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[quantize]\nmode = 'dynamic'\nbits = 4\n")
    with pytest.raises(CompileError, match=r"recipe .*bad.toml: unknown setting `quantize.bits`"):
        Recipe.from_file(bad)
    bad.write_text("[quantize\n")
    with pytest.raises(CompileError, match="is not valid TOML"):
        Recipe.from_file(bad)
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps({"recipe_version": 99}))
    with pytest.raises(CompileError, match="recipe version 99 is newer"):
        Recipe.from_file(newer)
    with pytest.raises(CompileError, match="cannot tell the recipe format"):
        Recipe.from_file(tmp_path / "recipe.ini")
    with pytest.raises(CompileError, match=r"unknown recipe setting\(s\) \['bits'\]"):
        Recipe.from_flags(bits=4)


def test_planning_rules_need_the_target_and_the_registry():
    no_tvm = TargetProfile.model_validate({**load_profile("x86-64-avx2").model_dump(), "tvm_target": None})
    with pytest.raises(CompileError, match="needs tvm_target in the target profile"):
        plan_build(no_tvm, Recipe.from_flags(backend="tvm"), cache_root=None)
    with pytest.raises(CompileError, match=r"option\(s\) \['bits'\] do not apply to the tvm backend"):
        plan_build(
            load_profile("x86-64-avx2"), Recipe.from_flags(backend="tvm", backend_options={"bits": 4}), cache_root=None
        )
    with pytest.raises(CompileError, match="tvm option `tune_trials`|whole number"):
        plan_build(load_profile("x86-64-avx2"), Recipe.from_flags(backend="tvm", tune_trials=-2), cache_root=None)
    with pytest.raises(CompileError, match="openvino backend quantizes auto from calibration data"):
        plan_build(load_profile("x86-64-avx2"), Recipe.from_flags(backend="openvino", quantize="auto"), cache_root=None)
    with pytest.raises(CompileError, match="target arm64-cortex-a76 does not list bf16"):  # not: use openvino
        plan_build(load_profile("arm64-cortex-a76"), Recipe.from_flags(precision="bf16"), cache_root=None)
    for cuda in ("nvidia-cuda", "jetson-orin"):  # an artifact no runtime would load
        with pytest.raises(CompileError, match=r"does not run on .*accelerator \(cuda\): it runs on the CPU"):
            plan_build(load_profile(cuda), Recipe.from_flags(backend="openvino"), cache_root=None)


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True),
    st.text(max_size=12),
    st.lists(st.integers(-3, 300), max_size=4),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(sorted(FLAGS)), VALUES, max_size=5))
def test_any_flag_values_give_a_recipe_or_one_clear_error(flags):
    try:
        recipe = Recipe.from_flags(**flags)
    except CompileError as exc:
        assert str(exc) and "\n" not in exc.message
        return
    assert Recipe.model_validate_json(recipe.model_dump_json()) == recipe


def test_cli_saved_recipe_rebuilds_the_same_artifact(capsys, bert_folders, tmp_path):
    def compile_cli(*flags) -> int:
        return main(["compile", str(bert_folders["sequence"]), "--target", "x86-64-avx2", *map(str, flags)])

    recipe = tmp_path / "r.toml"
    assert compile_cli("--quantize", "dynamic", "--opset", "17", "--save-recipe", recipe) == 0  # no -o: recipe only
    assert Recipe.from_file(recipe).quantize.mode.value == "dynamic" and not (tmp_path / "a").exists()
    assert compile_cli("--recipe", recipe, "-o", tmp_path / "a") == 0
    stored = tmp_path / "a" / "recipe.toml"
    assert Recipe.from_file(stored) == Recipe.from_flags(Recipe.from_file(recipe), backend="onnxruntime")
    assert compile_cli("--recipe", stored, "-o", tmp_path / "b") == 0
    first, second = (json.loads((tmp_path / name / "manifest.json").read_text()) for name in ("a", "b"))
    assert first["artifact_id"] == second["artifact_id"] and first["files"] == second["files"]
    assert compile_cli("--recipe", stored, "--quantize", "none", "--save-recipe", tmp_path / "float.toml") == 0
    assert Recipe.from_file(tmp_path / "float.toml").quantize.mode.value == "none"
    assert Recipe.from_file(tmp_path / "float.toml").export.opset == 17


def test_a_saved_recipe_names_its_data_absolutely_and_stray_flags_are_refused(capsys, bert_folders, tmp_path):
    from .test_cli import assert_one_line_error

    data = tmp_path / "calib.tsv"
    data.write_text("sentence\tlabel\na good film\tpositive\n")
    model = str(bert_folders["sequence"])
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)  # the user typed a relative path
        flags = ["--quantize", "static", "--calibration", "calib.tsv", "--save-recipe", "int8.toml"]
        assert main(["compile", model, *flags]) == 0
    assert Recipe.from_file(tmp_path / "int8.toml").quantize.calibration == str(data)
    for flags, refused in (
        (["--latency-budget", "5"], "--latency-budget applies to --backend auto"),
        (["--auto-keep-candidates", "--auto-sequence", "64"], "--auto-sequence, --auto-keep-candidates apply to"),
        (["--data", str(data)], "--data is training data for pruning"),
        (["--eval-data", str(data)], "--eval-data scores quantization"),
        (["--text-column", "body"], "--text-column name columns of the data files, and this compile reads none"),
    ):
        capsys.readouterr()
        assert_one_line_error(
            main(["compile", model, "-o", str(tmp_path / "x"), *flags]), capsys.readouterr().err, refused
        )
    assert not (tmp_path / "x").exists()


def test_compile_reads_data_with_other_column_names(capsys, bert_folders, tmp_path):
    from .conftest import LABELS_TEXT

    data = tmp_path / "odd.jsonl"
    data.write_text("".join(json.dumps({"body": f"film {i}", "y": LABELS_TEXT[i % 2]}) + "\n" for i in range(8)))
    flags = ["compile", str(bert_folders["sequence"]), "--target", "x86-64-avx2", "--quantize", "dynamic"]
    flags += ["--accuracy-budget", "50", "--eval-data", str(data), "-o", str(tmp_path / "a")]
    assert main(flags) == 2 and "has no text column (columns: body, y" in capsys.readouterr().err
    assert main([*flags, "--text-column", "body", "--label-column", "y"]) == 0, capsys.readouterr().err
    stored = Recipe.from_file(tmp_path / "a" / "recipe.toml").data
    assert (stored.text_column, stored.label_column) == ("body", "y")
    from edgekiln.compiler.api import _DataRoles

    lines = tmp_path / "calib.txt"  # one text per line: no columns to name, read as it is
    lines.write_text("hello world\nsecond line\n")
    recipe = Recipe.from_flags(
        quantize="static", calibration=str(lines), text_column="body", label_column="y", eval_data=str(data)
    )
    roles = _DataRoles(recipe, {})
    assert roles.get("calibration") == str(lines) and len(roles.get("eval")) == 8


def test_calibration_tables_need_no_label_column(capsys, bert_folders, tmp_path):
    texts = tmp_path / "unlabelled.tsv"
    texts.write_text("sentence\n" + "".join(f"a film {i}\n" for i in range(8)))
    named = tmp_path / "named.jsonl"
    named.write_text("".join(json.dumps({"body": f"a film {i}"}) + "\n" for i in range(8)))
    flags = ["compile", str(bert_folders["sequence"]), "--target", "x86-64-avx2", "--quantize", "static"]
    assert main([*flags, "--calibration", str(texts), "-o", str(tmp_path / "a")]) == 0, capsys.readouterr().err
    assert main([*flags, "--calibration", str(named), "--text-column", "body", "-o", str(tmp_path / "b")]) == 0, (
        capsys.readouterr().err
    )
