"""Validation of the workflow configuration against workflow/schemas/config.schema.yaml."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "workflow" / "schemas" / "config.schema.yaml"


# The suites config.yaml may hold: demo and paper are required, evidence is optional (README "Suites").
SUITES = ("demo", "evidence", "paper")


class ConfigError(ValueError):
    """An invalid configuration; the message names the offending key."""


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "<top level>"


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
