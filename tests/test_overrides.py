"""Overriding nested settings (issue 14, item 4): Snakemake's ``--configfile``/``--config`` and
picat's own ``--config FILE --set KEY.SUB=VALUE``, both validated by the one schema."""

from __future__ import annotations

import copy
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from snakemake.cli import parse_config
from snakemake.utils import update_config

from picat.cli import build_parser, main
from picat.config import (
    COMMAND_BLOCKS,
    ConfigError,
    apply_overrides,
    command_settings,
    load_config,
    merge_command_line_config,
    merge_into,
    parse_yaml_value,
    validate_config,
)

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "config.yaml"


@pytest.fixture
def config() -> dict:
    return yaml.safe_load(CONFIG.read_text())


# --- --set values and keys --------------------------------------------------------------------


@pytest.mark.parametrize("text, value", [
    ("2", 2), ("0.5", 0.5), ("1e-3", 0.001), ("true", True), ("[0, 1]", [0, 1]), ("{k: 20}", {"k": 20}),
    ("paper", "paper"), ("'7'", "7"),
])
def test_set_values_read_as_yaml(text, value):
    assert parse_yaml_value(text) == value and type(parse_yaml_value(text)) is type(value)


def test_set_overrides_only_the_keys_it_names(config):
    changed = apply_overrides(config, ["demo.pretrain.epochs=2", "demo.pretrain.seeds=[0]",
                                       "demo.downstream.partseg.seeds=[0]", "demo.downstream.semseg.seeds=[0]",
                                       "demo.downstream.finetune.seeds=[0]", "demo.pretrain.dgcnn={k: 20}",
                                       "suite=evidence"])
    assert validate_config(changed) is changed
    pretrain = changed["demo"]["pretrain"]
    assert (pretrain["epochs"], pretrain["seeds"], changed["suite"]) == (2, [0], "evidence")
    # a mapping merges into the mapping it sets: DGCNN's other options stay
    assert pretrain["dgcnn"] == {**config["demo"]["pretrain"]["dgcnn"], "k": 20}
    untouched = copy.deepcopy(changed)
    untouched["demo"]["pretrain"] = config["demo"]["pretrain"]
    untouched["demo"]["downstream"] = config["demo"]["downstream"]
    untouched["suite"] = config["suite"]
    assert untouched == config
    assert config["demo"]["pretrain"]["epochs"] == 16  # the original is left alone


@pytest.mark.parametrize("override, message", [
    ("demo.pretrain.epochz=2", r"invalid config key 'demo\.pretrain\.epochz': Additional properties"),
    ("demo.pretrain.epochs=zero", r"invalid config key 'demo\.pretrain\.epochs': 'zero' is not of type 'integer'"),
    ("demo.pretrain.epochs=0", r"invalid config key 'demo\.pretrain\.epochs': 0 is less than the minimum"),
    ("demo.render.engine=eevee", r"invalid config key 'demo\.render\.engine'"),
    ("paper.pretrain.runs.dgcnn=[full, best]", r"invalid config key 'paper\.pretrain\.runs\.dgcnn\.1'"),
    ("demo.pretrain.epochs.max=3", r"invalid config key 'demo\.pretrain\.epochs\.max': 'demo\.pretrain\.epochs' is 16"),
    ("demo.pretrain.epochs", r"--set 'demo.pretrain.epochs': expected KEY.SUB=VALUE"),
    ("demo..epochs=2", r"expected KEY.SUB=VALUE"),
])
def test_a_bad_override_is_one_error_naming_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(CONFIG, [override])


def test_check_config_shows_the_effective_config_is_valid(tmp_path, capsys):
    assert main(["check-config", str(CONFIG), "--set", "demo.pretrain.epochs=2", "--print"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{CONFIG} with demo.pretrain.epochs=2: valid\n")
    assert yaml.safe_load(out.split("\n", 1)[1])["demo"]["pretrain"]["epochs"] == 2
    assert main(["check-config", str(CONFIG), "--set", "demo.pretrain.lr_point=fast"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["picat check-config: error: invalid config key 'demo.pretrain.lr_point': 'fast' is not of type "
                   "'number'"]
    assert main(["check-config", str(tmp_path / "none.yaml")]) == 1
    assert "none.yaml does not exist" in capsys.readouterr().err


# --- picat <command> --config FILE --set ... ----------------------------------------------------


def run_command(monkeypatch, target: str, argv: list[str]) -> dict:
    """Parse and run ``argv`` with the stage function ``target`` replaced; its arguments."""
    seen: dict = {}
    monkeypatch.setattr(target, lambda *args, **kwargs: seen.update(args=args, kwargs=kwargs))
    threads = torch.get_num_threads()
    try:
        args = build_parser().parse_args(argv)
        args.run(args)
    finally:
        torch.set_num_threads(threads)
    return seen


def test_svm_from_the_config_with_an_override(monkeypatch, config):
    argv = ["svm", "--benchmark", "modelnet40", "--random", "{}", "--seed", "0", "--out", "x.json",
            "--config", str(CONFIG), "--set", "demo.downstream.svm.folds=3"]
    seen = run_command(monkeypatch, "picat.stages.svm.run_svm", argv)
    benchmark, dataset, settings, _, suite, seed = seen["args"]
    svm = config["demo"]["downstream"]["svm"]
    assert settings == {key: value for key, value in svm.items() if key not in ("backbone", "benchmarks")} | {
        "folds": 3}
    assert (benchmark, dataset, suite, seed) == ("modelnet40", config["demo"]["downstream"]["datasets"]["modelnet40"],
                                                 "demo", 0)
    assert seen["kwargs"]["amp"] == config["demo"]["amp"]  # the suite's precision, as the rule passes it
    # given on the command line, the suite and the precision win
    seen = run_command(monkeypatch, "picat.stages.svm.run_svm", [*argv, "--suite", "evidence", "--amp", "fp32"])
    assert seen["args"][2]["folds"] == config["evidence"]["downstream"]["svm"]["folds"]
    assert (seen["args"][4], seen["kwargs"]["amp"]) == ("evidence", "fp32")


def test_pretrain_from_the_config(monkeypatch, config):
    argv = ["pretrain", "--shards", "a.h5", "--out", "run/checkpoint.pt", "--backbone", "dgcnn", "--variant", "full",
            "--seed", "0", "--config", str(CONFIG), "--set", "demo.pretrain.epochs=2", "--device", "cpu"]
    seen = run_command(monkeypatch, "picat.stages.pretrain.run_pretraining", argv)
    shards, features, out, backbone, variant, seed, settings, up_axis, suite, image_backbone = seen["args"][:10]
    assert settings == config["demo"]["pretrain"] | {"epochs": 2}
    assert (up_axis, suite, image_backbone) == ("y", "demo", config["demo"]["image_backbone"])
    assert features is None and seen["kwargs"]["amp"] == "auto"
    with_features = run_command(monkeypatch, "picat.stages.pretrain.run_pretraining", [*argv, "--features", "f.h5"])
    assert with_features["args"][9] is None  # encode caches name their own 2D backbone


@pytest.mark.parametrize("extra, message", [
    ([], "give --settings JSON, or --config FILE"),
    (["--settings", "{}", "--set", "demo.pretrain.epochs=2"], "--set needs --config FILE"),
    (["--settings", "{}", "--config", str(CONFIG)], "give --settings or --config, not both"),
])
def test_settings_come_from_exactly_one_place(capsys, extra, message):
    argv = ["finetune", "--benchmark", "scanobjectnn_obj_bg", "--random", "{}", "--seed", "0", "--suite", "demo",
            "--out", "x.json", "--dataset", "{}", *extra]
    assert main(argv) == 1
    assert message in capsys.readouterr().err


def test_a_bad_override_stops_the_command_naming_the_key(capsys):
    argv = ["partseg", "--random", "{}", "--seed", "0", "--out", "x.json", "--config", str(CONFIG),
            "--set", "demo.downstream.partseg.optimizer=rmsprop"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("picat partseg: error: invalid config key 'demo.downstream.partseg.optimizer'")
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("suite", ["demo", "evidence", "paper"])
def test_each_command_reads_its_suites_block(config, suite):
    """What each block holds is checked against the rules by the dry run below; here, the lookup."""
    downstream = config[suite]["downstream"]
    assert command_settings(config, "features", suite) == {key: downstream["svm"][key]
                                                           for key in ("n_points", "batch_size")}
    assert command_settings(config, "pretrain", suite) == config[suite]["pretrain"]
    for command in ("finetune", "partseg", "semseg", "standins", "seg-standins"):
        path = COMMAND_BLOCKS[command][0]
        if path[-1] not in (downstream if path[0] == "downstream" else config[suite]):
            with pytest.raises(ConfigError, match=f"'{suite}.{'.'.join(path)}': missing"):
                command_settings(config, command, suite)
        else:
            assert set(command_settings(config, command, suite)) <= set(
                downstream[path[-1]] if path[0] == "downstream" else config[suite][path[-1]])


# --- Snakemake: --configfile and --config merge into config.yaml's nested settings ---------------


def snakemake_config(config: dict, configfiles: list[dict], entries: list[str]) -> dict:
    """The Snakefile's config: config.yaml, then the --configfile files and the --config entries as
    Snakemake merges them (snakemake.utils.update_config), then common.smk's typed merge."""
    effective = copy.deepcopy(config)
    command_line = parse_config(entries)
    for override in [*configfiles, command_line]:
        update_config(effective, copy.deepcopy(override))
    return merge_command_line_config(effective, command_line)


def test_snakemake_config_merges_nested_keys_with_their_types(config):
    partial = {"demo": {"pretrain": {"epochs": 3, "dgcnn": {"k": 20}}}}
    effective = snakemake_config(config, [partial], ["demo={pretrain: {seeds: [0], lr_point: 0.01}, "
                                                     "downstream: {partseg: {seeds: [0]}, semseg: {seeds: [0]}}}",
                                                     "suite=demo"])
    pretrain = effective["demo"]["pretrain"]
    assert (pretrain["epochs"], pretrain["seeds"], pretrain["lr_point"]) == (3, [0], 0.01)
    assert pretrain["dgcnn"] == config["demo"]["pretrain"]["dgcnn"] | {"k": 20}
    assert validate_config(effective) is effective
    expected = merge_into(copy.deepcopy(config), partial)
    merge_into(expected, {"demo": {"pretrain": {"seeds": [0], "lr_point": 0.01},
                                   "downstream": {"partseg": {"seeds": [0]}, "semseg": {"seeds": [0]}}}})
    assert effective == expected
    # Snakemake alone leaves --config's nested values as strings, which the schema refuses
    raw = copy.deepcopy(config)
    update_config(raw, parse_config(["demo={pretrain: {epochs: 2}}"]))
    with pytest.raises(ConfigError, match="'demo.pretrain.epochs': '2' is not of type 'integer'"):
        validate_config(raw)
    # and refuses dotted keys outright
    with pytest.raises(ValueError, match="valid identifier"):
        parse_config(["demo.pretrain.epochs=2"])


def dry_run(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(tmp_path), "--cores", "2", "-n", "-p", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def test_snakemake_dry_run_passes_each_command_the_effective_settings(tmp_path, config):
    """A dry run with a partial --configfile and a nested --config: every command's --settings is
    the effective config's block (picat.config.command_settings, what `picat --config` uses)."""
    (tmp_path / "config.yaml").write_text(CONFIG.read_text())
    partial = {"demo": {"pretrain": {"epochs": 3}, "downstream": {"svm": {"folds": 4}}}}
    (tmp_path / "partial.yaml").write_text(yaml.safe_dump(partial))
    nested = "demo={pretrain: {seeds: [0]}, downstream: {partseg: {seeds: [0], epochs: 2}, semseg: {seeds: [0]}, " \
             "finetune: {seeds: [0]}}}"
    result = dry_run(tmp_path, "results/tables.csv", "--configfile", str(tmp_path / "partial.yaml"),
                     "--config", nested)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    effective = merge_into(copy.deepcopy(config), partial)
    merge_into(effective, {"demo": {"pretrain": {"seeds": [0]}, "downstream": {
        "partseg": {"seeds": [0], "epochs": 2}, "semseg": {"seeds": [0]}, "finetune": {"seeds": [0]}}}})
    checked = set()
    for line in (result.stdout + result.stderr).splitlines():
        if "python -m picat " not in line:
            continue
        words = shlex.split(line.split("python -m picat ", 1)[1])
        if words[0] not in (*COMMAND_BLOCKS, "features"):
            continue
        args = build_parser().parse_args(words[:words.index(">")])
        expected = command_settings(effective, words[0], "demo")
        if words[0] == "pretrain":  # the rule passes one backbone's options only (pretrain_run_settings)
            from picat.config import pretrain_run_settings

            expected = pretrain_run_settings(expected, args.backbone)
            assert args.seed == 0
        assert args.settings == expected, line
        checked.add(words[0])
    assert checked == {*COMMAND_BLOCKS, "features"}


def test_snakemake_refuses_an_invalid_override_naming_the_key(tmp_path):
    (tmp_path / "config.yaml").write_text(CONFIG.read_text())
    result = dry_run(tmp_path, "pretrain", "--config", "demo={pretrain: {epochs: zero}}")
    assert result.returncode != 0
    assert ("config.yaml with --config: invalid config key 'demo.pretrain.epochs': 'zero' is not of type 'integer'"
            in result.stdout + result.stderr)
