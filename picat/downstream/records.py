"""The JSON record(s) of one downstream run, the unit that ``picat.report`` collates into tables.

A run with one number (linear SVM, classification fine-tuning) writes one record (a JSON
object, :func:`make_record` / :func:`write_record`); a run that measures several metrics at once
(part and scene segmentation) writes a JSON list of records, one per metric, that agree on
everything else (:func:`make_records` / :func:`write_records`).

Every record says which suite and which image-backbone weights made it, so that a demo-suite
figure can never pass for a paper reproduction. The record format and its validation live
here, beside the writers; the collation (:mod:`picat.report.results`) reads with the same checks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from picat.atomic import write_json_atomically
from picat.downstream.backbones import image_weights_label, trainable_pretrain_params

CLASSIFICATION_BENCHMARKS = ("modelnet40", "scanobjectnn_obj_bg", "scanobjectnn_obj_only",
                             "scanobjectnn_pb_t50_rs")
# Each protocol's benchmarks and the metrics its records may carry. Scene
# segmentation may also record its overall accuracy, which Table 5 does not show.
PROTOCOL_BENCHMARKS: dict[str, tuple[str, ...]] = {
    "svm": CLASSIFICATION_BENCHMARKS, "finetune": CLASSIFICATION_BENCHMARKS,
    "partseg": ("shapenetpart",), "semseg": ("s3dis",), "fewshot": CLASSIFICATION_BENCHMARKS}
# The few-shot linear probe (picat-only, not in the paper) has no fixed metric list: it records
# one metric per configured shot count, named by :func:`fewshot_metric` (:data:`FEWSHOT_METRIC`).
PROTOCOL_METRICS: dict[str, tuple[str, ...]] = {
    "svm": ("overall_accuracy",), "finetune": ("overall_accuracy",),
    "partseg": ("instance_miou", "class_miou"), "semseg": ("miou", "macc", "overall_accuracy"), "fewshot": ()}
FEWSHOT_METRIC = re.compile(r"overall_accuracy_(?:([1-9][0-9]*)shot|all)")
# Protocols that train the backbone on the task, whose baseline is a backbone trained from scratch.
TRAINING_PROTOCOLS = ("finetune", "partseg", "semseg")
# Protocols on frozen features, whose baseline is the same architecture at random init.
FROZEN_PROTOCOLS = ("svm", "fewshot")

PROTOCOLS = tuple(PROTOCOL_BENCHMARKS)
BENCHMARKS = tuple(dict.fromkeys(b for benchmarks in PROTOCOL_BENCHMARKS.values() for b in benchmarks))
BACKBONES = ("dgcnn", "pointnext")
VARIANTS = ("full", "no_local", "no_global", "no_pose", "normals")
# "imported": a backbone from an outside checkpoint (``picat convert ... --from FORMAT``, scored
# beside Pic@Point's under the same protocol); its record's ``variant`` is the import's name
# (the config key under ``<suite>.imported``), so that each import groups and prints as its own row.
INITS = ("pic@point", "random", "scratch", "imported")
# An import's name: it becomes part of result paths (``<backbone>_imported-<name>``) and table labels.
IMPORT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
METRICS = tuple(dict.fromkeys(m for metrics in PROTOCOL_METRICS.values() for m in metrics))
SUITES = ("demo", "evidence", "paper")

# The keys a result file must have. ``checkpoint`` and ``details`` are optional: a random-init
# or from-scratch run has no pre-training checkpoint, and ``details`` is free-form.
REQUIRED_KEYS = ("protocol", "benchmark", "backbone", "variant", "init", "seed", "metric", "value",
                 "suite", "image_backbone", "trainable_pretrain_params")



# Keys on which the records of one list file (one run) must agree: all but metric, value, details.
SAME_RUN_KEYS = ("protocol", "benchmark", "backbone", "variant", "init", "seed", "suite", "image_backbone",
                 "trainable_pretrain_params", "checkpoint")


def fewshot_metric(shots: int | str) -> str:
    """The few-shot probe's metric for ``shots`` training objects per category (``"all"``: every one)."""
    if shots == "all":
        return "overall_accuracy_all"
    if isinstance(shots, bool) or not isinstance(shots, int) or shots < 1:
        raise ValueError(f"shots must be a positive integer or 'all', got {shots!r}")
    return f"overall_accuracy_{shots}shot"


def fewshot_shots(metric: str) -> int | str | None:
    """The shot count a few-shot metric names (an int, or ``"all"``); None for any other metric."""
    match = FEWSHOT_METRIC.fullmatch(metric)
    if match is None:
        return None
    return "all" if match.group(1) is None else int(match.group(1))


def protocol_allows_metric(protocol: str, metric: str) -> bool:
    """Whether ``protocol``'s records may carry ``metric``."""
    if protocol == "fewshot":
        return fewshot_shots(metric) is not None
    return metric in PROTOCOL_METRICS[protocol]


class ResultFileError(ValueError):
    """A result file that cannot be read or that breaks the result format."""


def record_error(path: Path, key: str | None, problem: str, index: int | None = None) -> ResultFileError:
    """An error naming the file, the record's index in a list file (if any) and the key."""
    where = f"{path}: " + (f"record [{index}]: " if index is not None else "") + (f"key {key!r}: " if key else "")
    return ResultFileError(where + problem)


def _require_choice(path: Path, record: dict[str, Any], key: str, choices: tuple[str, ...],
                    nullable: bool = False, index: int | None = None) -> None:
    value = record[key]
    if value is None and nullable:
        return
    if value not in choices:
        allowed = ", ".join(choices) + (", null" if nullable else "")
        raise record_error(path, key, f"{value!r} is not one of {allowed}", index)


def _validate_types(path: Path, record: dict[str, Any], index: int | None = None) -> None:
    """Check the numeric and free-text keys (bools are rejected: JSON ``true`` is no seed)."""
    seed = record["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise record_error(path, "seed", f"{seed!r} is not a non-negative integer", index)
    value = record["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise record_error(path, "value", f"{value!r} is not a finite number", index)
    if not 0.0 <= value <= 100.0:
        raise record_error(path, "value", f"{value!r} is not a percentage in [0, 100]", index)
    params = record["trainable_pretrain_params"]
    if params is not None and (isinstance(params, bool) or not isinstance(params, int) or params < 0):
        raise record_error(path, "trainable_pretrain_params", f"{params!r} is not a non-negative integer or null",
                           index)
    image = record["image_backbone"]
    if image is not None and (not isinstance(image, str) or not image):
        raise record_error(path, "image_backbone", f"{image!r} is not a non-empty string or null", index)
    checkpoint = record.get("checkpoint")
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise record_error(path, "checkpoint", f"{checkpoint!r} is not a string or null", index)


def _validate_consistency(path: Path, record: dict[str, Any], index: int | None = None) -> None:
    """Check the combinations the format allows: each protocol has its own benchmarks and
    metrics, a pre-trained run names its variant, an imported run its import's name, a baseline
    neither, and each baseline belongs to its kind of protocol (random init: the protocols on
    frozen features; scratch: the training protocols). An imported run may be of any protocol."""
    init, variant, protocol = record["init"], record["variant"], record["protocol"]
    benchmark, metric = record["benchmark"], record["metric"]
    if benchmark not in PROTOCOL_BENCHMARKS[protocol]:
        raise record_error(path, "benchmark", f"{benchmark!r} is not a benchmark of protocol {protocol!r} "
                    f"(expected one of {', '.join(PROTOCOL_BENCHMARKS[protocol])})", index)
    if not protocol_allows_metric(protocol, metric):
        expected = (", ".join(PROTOCOL_METRICS[protocol]) if PROTOCOL_METRICS[protocol]
                    else "overall_accuracy_<k>shot, overall_accuracy_all")
        raise record_error(path, "metric", f"{metric!r} is not a metric of protocol {protocol!r} "
                    f"(expected one of {expected})", index)
    if init == "pic@point" and variant is None:
        raise record_error(path, "variant", "is null, but a pic@point run must name its pre-training variant", index)
    if init == "imported" and (not isinstance(variant, str) or IMPORT_NAME.fullmatch(variant) is None):
        raise record_error(path, "variant", f"is {variant!r}, but an 'imported' run names its import there (letters, "
                    "digits, '_' and '-', at most 64, starting with a letter or digit)", index)
    if init in ("random", "scratch") and variant is not None:
        raise record_error(path, "variant", f"is {variant!r}, but a {init!r} run has no pre-training variant "
                    "(expected null)", index)
    if init == "random" and protocol not in FROZEN_PROTOCOLS:
        raise record_error(path, "init", f"'random' is the baseline of the protocols on frozen features "
                    f"({', '.join(FROZEN_PROTOCOLS)}), but protocol is {protocol!r}", index)
    if init == "scratch" and protocol not in TRAINING_PROTOCOLS:
        raise record_error(path, "init", f"'scratch' is the baseline of the protocols that train the backbone "
                    f"({', '.join(TRAINING_PROTOCOLS)}), but protocol is {protocol!r}", index)


def validate_record(path: Path, record: Any, index: int | None = None) -> dict[str, Any]:
    """Check one parsed result record and return the row it contributes.

    Args:
        path: the file it comes from (for the messages and the row's ``path``).
        record: the parsed JSON object.
        index: its position when the file holds a list of records (named in the messages).

    Raises:
        ResultFileError: naming ``path`` (and ``index``) and the offending key.
    """
    if not isinstance(record, dict):
        raise record_error(path, None, f"expected a JSON object, got {type(record).__name__}", index)
    for key in REQUIRED_KEYS:
        if key not in record:
            raise record_error(path, key, "missing", index)
    _require_choice(path, record, "protocol", PROTOCOLS, index=index)
    _require_choice(path, record, "benchmark", BENCHMARKS, index=index)
    _require_choice(path, record, "backbone", BACKBONES, index=index)
    _require_choice(path, record, "init", INITS, index=index)
    if record["init"] != "imported":  # an imported run's variant is its import's name (_validate_consistency)
        _require_choice(path, record, "variant", VARIANTS, nullable=True, index=index)
    metric = record["metric"]
    if metric not in METRICS and (not isinstance(metric, str) or fewshot_shots(metric) is None):
        raise record_error(path, "metric", f"{metric!r} is not one of {', '.join(METRICS)}, "
                           "overall_accuracy_<k>shot, overall_accuracy_all", index)
    _require_choice(path, record, "suite", SUITES, index=index)
    _validate_types(path, record, index)
    _validate_consistency(path, record, index)
    row = {key: record[key] for key in REQUIRED_KEYS}
    # Absent variant / image backbone become "" so that they group and print like the paper
    # table's empty cells (pandas drops NaN group keys).
    row["variant"] = row["variant"] or ""
    row["image_backbone"] = row["image_backbone"] or ""
    row["value"] = float(row["value"])
    row["checkpoint"] = record.get("checkpoint") or ""
    row["path"] = str(path)
    return row


def validate_records(path: Path, content: Any) -> list[dict[str, Any]]:
    """Check a parsed result file — one record, or a list of one run's records — and return its rows.

    A list must be non-empty, its records must agree on every key of :data:`SAME_RUN_KEYS`
    (they are one run's measurements) and name distinct metrics.

    Raises:
        ResultFileError: naming ``path``, the record's index in the list and the key.
    """
    if isinstance(content, dict):
        return [validate_record(path, content)]
    if not isinstance(content, list):
        raise record_error(path, None, f"expected a JSON object or a list of objects, got {type(content).__name__}")
    if not content:
        raise record_error(path, None, "is an empty list (expected at least one record)")
    rows = [validate_record(path, record, index) for index, record in enumerate(content)]
    first = content[0]
    seen_metrics: dict[str, int] = {}
    for index, record in enumerate(content):
        for key in SAME_RUN_KEYS:
            if record.get(key) != first.get(key):
                raise record_error(path, key, f"{record.get(key)!r} differs from record [0]'s {first.get(key)!r} "
                            "(the records of one file are one run's metrics)", index)
        metric = record["metric"]
        if metric in seen_metrics:
            raise record_error(path, "metric", f"{metric!r} repeats record [{seen_metrics[metric]}]'s metric", index)
        seen_metrics[metric] = index
    return rows


def make_record(*, protocol: str, benchmark: str, backbone: str, variant: str | None, init: str, seed: int,
                value: float, suite: str, image_backbone: str | None, trainable_pretrain_params: int | None,
                checkpoint: str | None, details: dict[str, Any], metric: str = "overall_accuracy") -> dict[str, Any]:
    """A result record (the format ``picat.report.results.load_results`` reads); value in percent.

    Checked by :func:`write_record` with the collation's own validation.
    """
    return {"protocol": protocol, "benchmark": benchmark, "backbone": backbone, "variant": variant, "init": init,
            "seed": int(seed), "metric": metric, "value": float(value), "suite": suite,
            "image_backbone": image_backbone, "trainable_pretrain_params": trainable_pretrain_params,
            "checkpoint": checkpoint, "details": details}


def make_records(metrics: Mapping[str, float], *, protocol: str, benchmark: str, backbone: str,
                 variant: str | None, init: str, seed: int, suite: str, image_backbone: str | None,
                 trainable_pretrain_params: int | None, checkpoint: str | None,
                 details: dict[str, Any]) -> list[dict[str, Any]]:
    """One run's records, one per metric (``{"miou": 63.1, "macc": 70.2}``; values in percent).

    Every record carries the same run keys and the same ``details``. Checked by
    :func:`write_records` with the collation's own validation.

    Raises:
        ValueError: when ``metrics`` is empty.
    """
    if not metrics:
        raise ValueError("make_records needs at least one metric")
    return [make_record(protocol=protocol, benchmark=benchmark, backbone=backbone, variant=variant, init=init,
                        seed=seed, value=value, suite=suite, image_backbone=image_backbone,
                        trainable_pretrain_params=trainable_pretrain_params, checkpoint=checkpoint,
                        details=details, metric=metric)
            for metric, value in metrics.items()]


def write_record(record: dict[str, Any], path: Path) -> None:
    """Check ``record`` as the collation will read it, then write it as JSON atomically (temp name, rename)."""
    path = Path(path)
    validate_record(path, record)
    write_json_atomically(path, record)


def write_records(records: list[dict[str, Any]], path: Path) -> None:
    """Check one run's ``records`` as the collation will read them, then write them as a JSON list atomically.

    Raises:
        ResultFileError: when a record is malformed, the records disagree
            on a run key, repeat a metric, or the list is empty (naming the file, index and key).
    """
    path = Path(path)
    if not isinstance(records, list):
        raise TypeError(f"write_records takes a list of records, got {type(records).__name__}")
    validate_records(path, records)
    write_json_atomically(path, records)


def json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats as None (strict JSON has no NaN; a class absent from a test set has no IoU)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    return value


def write_run_records(protocol: str, benchmark: str, backbone: str, metrics: dict[str, float], details: dict[str, Any],
           output: Path, suite: str, seed: int, init: str, variant: str | None, metadata: dict | None,
           checkpoint: Path | None) -> list[dict[str, Any]]:
    """Write one run's records, one per metric, with the backbone source's suite, weights and checkpoint."""
    records = make_records(
        metrics, protocol=protocol, benchmark=benchmark, backbone=backbone, variant=variant, init=init, seed=seed,
        suite=suite, image_backbone=None if metadata is None else image_weights_label(metadata),
        trainable_pretrain_params=trainable_pretrain_params(metadata),
        checkpoint=None if checkpoint is None else str(checkpoint), details=json_safe(details))
    write_records(records, output)
    return records
