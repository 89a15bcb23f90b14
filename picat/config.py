"""Validation of the workflow configuration against the schema shipped with the package
(picat/schemas/config.schema.yaml), and the overrides that make an effective config."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

# Package data (pyproject.toml), so that an installed picat validates without this checkout.
SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "config.schema.yaml"


# The suites config.yaml may hold: demo and paper are required, evidence is optional (README "Suites").
SUITES = ("demo", "evidence", "paper")


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


def _key_path(error: jsonschema.ValidationError) -> str:
    """The dotted key an error is about; an unexpected key is named itself, not its parent."""
    parts = [str(part) for part in error.absolute_path]
    if error.validator == "additionalProperties" and isinstance(error.instance, Mapping):
        unexpected = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        if len(unexpected) == 1:
            parts.append(str(unexpected[0]))
    return ".".join(parts) or "<top level>"


def validate_config(config: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Check ``config`` against the schema and picat's cross-field rules.

    Returns:
        The same dict, unchanged, when valid.

    Raises:
        ConfigError: naming the first invalid key (dotted path) and what is wrong with it.
    """
    schema = yaml.safe_load(Path(schema_path).read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(list(e.absolute_path)), str(e.absolute_path)))
    if errors:
        # The deepest error under the first offending key is the most specific one.
        error = jsonschema.exceptions.best_match(errors)
        raise ConfigError(f"invalid config key '{_key_path(error)}': {error.message}")
    for suite in (name for name in SUITES if name in config):
        render = config[suite]["render"]
        needed = math.degrees(2 * math.asin(1.0 / render["camera_distance"]))
        if render["fov_deg"] < needed:
            raise ConfigError(
                f"invalid config key '{suite}.render.fov_deg': {render['fov_deg']} does not show the whole unit "
                f"sphere from camera_distance {render['camera_distance']} (needs at least {needed:.1f})"
            )
        _check_runs_exist(config[suite], suite)
        _check_imported(config[suite], suite)
        downstream = config[suite]["downstream"]
        _check_shared_feature_settings(downstream, suite)
        for block, dataset in (("partseg", "shapenetpart"), ("semseg", "s3dis")):
            if block in downstream and dataset not in downstream["datasets"]:
                raise ConfigError(f"invalid config key '{suite}.downstream.datasets': '{suite}.downstream.{block}' "
                                  f"needs a '{dataset}' dataset entry")
    return config


# The keys of downstream.svm and downstream.fewshot that decide their frozen features: one
# features job per (benchmark, backbone, source, seed) serves both (picat.stages.features).
SHARED_FEATURE_KEYS = ("n_points", "batch_size")


def _check_shared_feature_settings(downstream: dict[str, Any], suite: str) -> None:
    """The svm and few-shot protocols read the same features file, so they must extract alike."""
    if "svm" not in downstream or "fewshot" not in downstream:
        return
    for key in SHARED_FEATURE_KEYS:
        svm, fewshot = downstream["svm"][key], downstream["fewshot"][key]
        if svm != fewshot:
            raise ConfigError(f"invalid config key '{suite}.downstream.fewshot.{key}': {fewshot} differs from "
                              f"'{suite}.downstream.svm.{key}' ({svm}); both protocols fit on one extraction of the "
                              "frozen features (results/frozen_features), so set them equal")


def imported_checkpoints(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A suite's imported checkpoints, name -> spec (``imported:`` empty or absent: none)."""
    return dict(settings.get("imported") or {})


def imported_protocols(settings: dict[str, Any], name: str) -> list[str]:
    """The frozen-feature protocols that score import ``name``: its ``protocols``, or by default
    the svm protocol when it scores this backbone (``downstream.svm.backbone``: Tables 1 and 3
    are of that backbone) and the few-shot probe (its table has a row per backbone)."""
    spec = imported_checkpoints(settings)[name]
    if "protocols" in spec:
        return list(spec["protocols"])
    svm = settings["downstream"]["svm"]["backbone"] == spec["backbone"]
    return (["svm"] if svm else []) + ["fewshot"]


def _check_imported(settings: dict[str, Any], suite: str) -> None:
    """An import's svm runs would be compared with nothing unless the svm protocol scores its backbone."""
    svm_backbone = settings["downstream"]["svm"]["backbone"]
    for name, spec in imported_checkpoints(settings).items():
        if "svm" in imported_protocols(settings, name) and spec["backbone"] != svm_backbone:
            raise ConfigError(f"invalid config key '{suite}.imported.{name}.protocols': 'svm' scores "
                              f"{suite}.downstream.svm.backbone ({svm_backbone}), but this import is a "
                              f"{spec['backbone']}; leave svm out (the few-shot probe scores either backbone)")


# Which pre-training backbone each checkpoint-consuming block starts from.
_CONSUMERS = {"partseg": "dgcnn", "semseg": "pointnext"}


def _check_runs_exist(settings: dict[str, Any], suite: str) -> None:
    """Segmentation runs and Figure 4 start from checkpoints that the pretrain block must produce."""
    runs, seeds = settings["pretrain"]["runs"], settings["pretrain"]["seeds"]
    for block, backbone in _CONSUMERS.items():
        if block not in settings["downstream"]:  # a suite without this protocol (evidence)
            continue
        wanted = settings["downstream"][block]
        for variant in wanted["variants"]:
            if variant not in runs.get(backbone, []):
                raise ConfigError(f"invalid config key '{suite}.downstream.{block}.variants': {variant!r} is not "
                                  f"pre-trained for {backbone} ({suite}.pretrain.runs.{backbone}: "
                                  f"{runs.get(backbone, [])})")
        if wanted["variants"]:
            missing = sorted(set(wanted["seeds"]) - set(seeds))
            if missing:
                raise ConfigError(f"invalid config key '{suite}.downstream.{block}.seeds': seeds {missing} start from "
                                  f"pre-training seeds that {suite}.pretrain.seeds ({seeds}) does not have")
    figure = settings["figure4"]
    for backbone in figure["backbones"]:
        if figure["variant"] not in runs.get(backbone, []) or figure["seed"] not in seeds:
            raise ConfigError(f"invalid config key '{suite}.figure4': {backbone} {figure['variant']} seed "
                              f"{figure['seed']} is not one of the pre-training runs ({suite}.pretrain)")
    heldout = settings["corpus"]["heldout_objects"]
    if figure["n_objects"] > heldout:
        # Figure 4 draws its objects from the held-out ones.
        raise ConfigError(f"invalid config key '{suite}.figure4.n_objects': {figure['n_objects']} objects, but "
                          f"{suite}.corpus.heldout_objects holds out only {heldout}")


def suite_settings(config: dict[str, Any]) -> dict[str, Any]:
    """The settings block of the selected suite."""
    return config[config["suite"]]


# Keys of the pretrain block that choose WHICH runs exist, not how one run trains.
_RUN_SELECTION_KEYS = ("runs", "seeds", "threads")  # threads: how fast, not what a run computes
_BACKBONE_OPTION_KEYS = ("dgcnn", "pointnext")


def pretrain_run_settings(pretrain: dict[str, Any], backbone: str) -> dict[str, Any]:
    """The settings one (backbone, variant, seed) run depends on.

    Drops the run selection (``runs``, ``seeds``), the job's ``threads`` and the other backbones' options, so that
    adding a seed or a variant, or retuning PointNeXt, does not invalidate DGCNN's runs.
    """
    return {key: value for key, value in pretrain.items()
            if key not in _RUN_SELECTION_KEYS and (key not in _BACKBONE_OPTION_KEYS or key == backbone)}


def pretrain_runs(pretrain: dict[str, Any]) -> list[tuple[str, str, int]]:
    """Every (backbone, variant, seed) the pretrain block asks for, in config order."""
    return [(backbone, variant, seed) for backbone, variants in pretrain["runs"].items()
            for variant in variants for seed in pretrain["seeds"]]


# --- overrides: `picat ... --set KEY.SUB=VALUE` and Snakemake's `--config` ----------------------


def merge_into(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``overrides`` into ``base`` in place, as Snakemake merges ``--configfile`` and ``--config``.

    Mappings merge key by key, at any depth; any other value (a scalar, a list) replaces the one in
    ``base``. Returns ``base``.
    """
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            merge_into(base[key], value)
        else:
            base[key] = copy.deepcopy(dict(value) if isinstance(value, Mapping) else value)
    return base


# A float in exponent form without a dot (1e-3), which YAML 1.1 reads as a string.
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_yaml_value(text: str) -> Any:
    """A command-line value read as YAML: ``2`` -> 2, ``1e-3`` -> 0.001, ``true`` -> True,
    ``[0, 1]`` -> [0, 1], ``{k: 20}`` -> {"k": 20}; anything else stays the string it is."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
        return float(value)
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """``KEY.SUB=VALUE`` as (["KEY", "SUB"], VALUE read by :func:`parse_yaml_value`).

    Raises:
        ConfigError: not of the form KEY=VALUE, or an empty key part.
    """
    key, sep, value = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(parts):
        raise ConfigError(f"--set {text!r}: expected KEY.SUB=VALUE, e.g. demo.pretrain.epochs=2")
    return parts, parse_yaml_value(value)


def apply_overrides(config: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``config`` with each ``KEY.SUB=VALUE`` of ``overrides`` set, in order.

    A mapping value merges into the mapping it sets (as :func:`merge_into`); missing keys are
    added, so the schema (:func:`validate_config`) names an unknown one.

    Raises:
        ConfigError: a malformed override, or one whose parent key is not a mapping.
    """
    result = copy.deepcopy(dict(config))
    for text in overrides:
        parts, value = parse_override(text)
        node = result
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"invalid config key '{'.'.join(parts)}': "
                                  f"'{'.'.join(parts[:depth + 1])}' is {child!r}, not a mapping")
            node = child
        merge_into(node, {parts[-1]: value})
    return result


def typed_config_values(values: Any) -> Any:
    """Snakemake's ``--config`` values, with the strings inside mappings and lists read as YAML.

    Snakemake reads ``--config 'demo={pretrain: {epochs: 2}}'`` with YAML's BaseLoader, so the
    nested 2 arrives as the string "2"; this gives it back its type (2), as ``--set`` would.
    """
    if isinstance(values, Mapping):
        return {key: typed_config_values(value) for key, value in values.items()}
    if isinstance(values, list):
        return [typed_config_values(value) for value in values]
    if isinstance(values, str):
        return parse_yaml_value(values)
    return values


def merge_command_line_config(config: dict[str, Any], command_line: Mapping[str, Any]) -> dict[str, Any]:
    """Merge Snakemake's ``--config`` values into ``config`` (in place) with their YAML types.

    Snakemake has already merged them (after config.yaml and any ``--configfile``), with nested
    values as strings; merging the typed values again leaves every other key as it was.
    """
    return merge_into(config, typed_config_values(dict(command_line)))


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Read a config file, apply ``--set`` overrides and validate the result.

    Raises:
        FileNotFoundError: no such file. ConfigError: not a YAML mapping, a malformed override, or an
            invalid key of the effective config (named, with the schema's message).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a YAML mapping of config keys")
    return validate_config(apply_overrides(config, overrides))


# --- one job's settings from the config (`picat <command> --config FILE`) ------------------------

# The block each command's --settings holds, as the workflow's rules pass it: its path under the
# suite, and the keys left out (they choose which runs exist, not how one run goes). `pretrain`
# takes the whole block (picat.stages.pretrain drops the run selection itself, pretrain_run_settings).
COMMAND_BLOCKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "pretrain": (("pretrain",), ()),
    "standins": (("standins",), ()),
    "seg-standins": (("seg_standins",), ()),
    "svm": (("downstream", "svm"), ("backbone", "benchmarks")),
    "fewshot": (("downstream", "fewshot"), ("benchmarks",)),
    "finetune": (("downstream", "finetune"), ("benchmarks", "seeds")),
    "partseg": (("downstream", "partseg"), ("variants", "seeds")),
    "semseg": (("downstream", "semseg"), ("variants", "seeds")),
}


def command_settings(config: Mapping[str, Any], command: str, suite: str) -> dict[str, Any]:
    """The ``--settings`` the workflow passes ``picat <command>`` for ``suite``.

    ``features`` gets the keys that ``downstream.svm`` and ``downstream.fewshot`` share.

    Raises:
        ConfigError: the suite, or the command's block in it, is missing.
    """
    if suite not in config:
        raise ConfigError(f"invalid config key '{suite}': the config has no such suite block")
    if command == "features":
        path, keep = ("downstream", "svm"), SHARED_FEATURE_KEYS
    elif command in COMMAND_BLOCKS:
        path, keep = COMMAND_BLOCKS[command][0], None
    else:
        raise ValueError(f"picat {command} takes no settings from the config")
    block: Any = config[suite]
    for depth, part in enumerate(path):
        if not isinstance(block, Mapping) or part not in block:
            raise ConfigError(f"invalid config key '{'.'.join((suite, *path[:depth + 1]))}': missing, and "
                              f"picat {command} reads its settings from it")
        block = block[part]
    if keep is not None:
        return {key: copy.deepcopy(block[key]) for key in keep}
    left_out = COMMAND_BLOCKS[command][1]
    return {key: copy.deepcopy(value) for key, value in block.items() if key not in left_out}
