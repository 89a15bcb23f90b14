"""Reading the downstream runs' result files and averaging them over seeds.

Every downstream run (linear SVM, fine-tuning, part or scene segmentation) writes one JSON
file: a single record (an object), or — for a run that measures several metrics at once, like
segmentation's mIoU and mAcc — a list of records, one per metric, all of the same run. This
module turns a set of such files into a DataFrame with one row per record
(:func:`load_results`) and a per-configuration, per-metric summary over seeds
(:func:`summarise`). Validation is strict on purpose: a table built from a half-written or
stale result file is worse than a failed rule, so every problem names the file and the key
(and, in a list file, the record's index).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

CLASSIFICATION_BENCHMARKS = ("modelnet40", "scanobjectnn_obj_bg", "scanobjectnn_obj_only",
                             "scanobjectnn_pb_t50_rs")
# Each protocol's benchmarks and the metrics its records may carry. Scene
# segmentation may also record its overall accuracy, which Table 5 does not show.
PROTOCOL_BENCHMARKS: dict[str, tuple[str, ...]] = {
    "svm": CLASSIFICATION_BENCHMARKS, "finetune": CLASSIFICATION_BENCHMARKS,
    "partseg": ("shapenetpart",), "semseg": ("s3dis",)}
PROTOCOL_METRICS: dict[str, tuple[str, ...]] = {
    "svm": ("overall_accuracy",), "finetune": ("overall_accuracy",),
    "partseg": ("instance_miou", "class_miou"), "semseg": ("miou", "macc", "overall_accuracy")}
# Protocols that train the backbone on the task, whose baseline is a backbone trained from scratch.
TRAINING_PROTOCOLS = ("finetune", "partseg", "semseg")

PROTOCOLS = tuple(PROTOCOL_BENCHMARKS)
BENCHMARKS = tuple(dict.fromkeys(b for benchmarks in PROTOCOL_BENCHMARKS.values() for b in benchmarks))
BACKBONES = ("dgcnn", "pointnext")
VARIANTS = ("full", "no_local", "no_global", "no_pose", "normals")
INITS = ("pic@point", "random", "scratch")
METRICS = tuple(dict.fromkeys(m for metrics in PROTOCOL_METRICS.values() for m in metrics))
SUITES = ("demo", "paper")

# The keys a result file must have. ``checkpoint`` and ``details`` are optional: a random-init
# or from-scratch run has no pre-training checkpoint, and ``details`` is free-form.
REQUIRED_KEYS = ("protocol", "benchmark", "backbone", "variant", "init", "seed", "metric", "value",
                 "suite", "image_backbone", "trainable_pretrain_params")

# The columns that identify one summary row: one configuration's one metric. Records that share
# them differ only in their seed (``metric`` is a key because a segmentation run records several).
GROUP_KEYS = ["protocol", "benchmark", "backbone", "variant", "init", "metric"]
# Columns that must agree across the seeds of one configuration and are carried into the summary.
CARRIED = ["suite", "image_backbone", "trainable_pretrain_params"]
# Keys on which the records of one list file (one run) must agree: all but metric, value, details.
SAME_RUN_KEYS = ("protocol", "benchmark", "backbone", "variant", "init", "seed", "suite", "image_backbone",
                 "trainable_pretrain_params", "checkpoint")

RESULT_COLUMNS = [*REQUIRED_KEYS, "checkpoint", "path"]
SUMMARY_COLUMNS = [*GROUP_KEYS, *CARRIED, "mean", "std", "n_runs", "seeds"]


class ResultFileError(ValueError):
    """A result file that cannot be read or that breaks the result format."""


def _fail(path: Path, key: str | None, problem: str, index: int | None = None) -> ResultFileError:
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
        raise _fail(path, key, f"{value!r} is not one of {allowed}", index)


def _validate_types(path: Path, record: dict[str, Any], index: int | None = None) -> None:
    """Check the numeric and free-text keys (bools are rejected: JSON ``true`` is no seed)."""
    seed = record["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _fail(path, "seed", f"{seed!r} is not a non-negative integer", index)
    value = record["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(path, "value", f"{value!r} is not a finite number", index)
    if not 0.0 <= value <= 100.0:
        raise _fail(path, "value", f"{value!r} is not a percentage in [0, 100]", index)
    params = record["trainable_pretrain_params"]
    if params is not None and (isinstance(params, bool) or not isinstance(params, int) or params < 0):
        raise _fail(path, "trainable_pretrain_params", f"{params!r} is not a non-negative integer or null", index)
    image = record["image_backbone"]
    if image is not None and (not isinstance(image, str) or not image):
        raise _fail(path, "image_backbone", f"{image!r} is not a non-empty string or null", index)
    checkpoint = record.get("checkpoint")
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise _fail(path, "checkpoint", f"{checkpoint!r} is not a string or null", index)


def _validate_consistency(path: Path, record: dict[str, Any], index: int | None = None) -> None:
    """Check the combinations the format allows: each protocol has its own benchmarks and
    metrics, a pre-trained run names its variant, a baseline does not, and each baseline
    belongs to its kind of protocol (random init: linear SVM; scratch: the training protocols)."""
    init, variant, protocol = record["init"], record["variant"], record["protocol"]
    benchmark, metric = record["benchmark"], record["metric"]
    if benchmark not in PROTOCOL_BENCHMARKS[protocol]:
        raise _fail(path, "benchmark", f"{benchmark!r} is not a benchmark of protocol {protocol!r} "
                    f"(expected one of {', '.join(PROTOCOL_BENCHMARKS[protocol])})", index)
    if metric not in PROTOCOL_METRICS[protocol]:
        raise _fail(path, "metric", f"{metric!r} is not a metric of protocol {protocol!r} "
                    f"(expected one of {', '.join(PROTOCOL_METRICS[protocol])})", index)
    if init == "pic@point" and variant is None:
        raise _fail(path, "variant", "is null, but a pic@point run must name its pre-training variant", index)
    if init in ("random", "scratch") and variant is not None:
        raise _fail(path, "variant", f"is {variant!r}, but a {init!r} run has no pre-training variant "
                    "(expected null)", index)
    if init == "random" and protocol != "svm":
        raise _fail(path, "init", f"'random' is the linear-SVM baseline, but protocol is {protocol!r}", index)
    if init == "scratch" and protocol not in TRAINING_PROTOCOLS:
        raise _fail(path, "init", f"'scratch' is the baseline of the protocols that train the backbone "
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
        raise _fail(path, None, f"expected a JSON object, got {type(record).__name__}", index)
    for key in REQUIRED_KEYS:
        if key not in record:
            raise _fail(path, key, "missing", index)
    _require_choice(path, record, "protocol", PROTOCOLS, index=index)
    _require_choice(path, record, "benchmark", BENCHMARKS, index=index)
    _require_choice(path, record, "backbone", BACKBONES, index=index)
    _require_choice(path, record, "variant", VARIANTS, nullable=True, index=index)
    _require_choice(path, record, "init", INITS, index=index)
    _require_choice(path, record, "metric", METRICS, index=index)
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
        raise _fail(path, None, f"expected a JSON object or a list of objects, got {type(content).__name__}")
    if not content:
        raise _fail(path, None, "is an empty list (expected at least one record)")
    rows = [validate_record(path, record, index) for index, record in enumerate(content)]
    first = content[0]
    seen_metrics: dict[str, int] = {}
    for index, record in enumerate(content):
        for key in SAME_RUN_KEYS:
            if record.get(key) != first.get(key):
                raise _fail(path, key, f"{record.get(key)!r} differs from record [0]'s {first.get(key)!r} "
                            "(the records of one file are one run's metrics)", index)
        metric = record["metric"]
        if metric in seen_metrics:
            raise _fail(path, "metric", f"{metric!r} repeats record [{seen_metrics[metric]}]'s metric", index)
        seen_metrics[metric] = index
    return rows


def load_results(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per record: a single-record file gives one row, a list file one row per metric.

    Columns: the format's keys (``protocol`` ... ``trainable_pretrain_params``), ``checkpoint``
    and ``path`` (the file; shared by a list file's rows). A null
    ``variant``/``image_backbone``/``checkpoint`` becomes ``""``; a null
    ``trainable_pretrain_params`` becomes ``<NA>`` (nullable integer column). ``details`` is not
    carried.

    Raises:
        ResultFileError: when a file cannot be read, is not JSON, misses a key or has a bad
            value; the message names the file, the key and, in a list file, the record's index.
    """
    rows = []
    for path in map(Path, paths):
        try:
            content = json.loads(path.read_text())
        except OSError as error:
            raise _fail(path, None, f"cannot be read ({error})") from error
        except json.JSONDecodeError as error:
            raise _fail(path, None, f"is not valid JSON ({error})") from error
        rows += validate_records(path, content)
    frame = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    frame["seed"] = frame["seed"].astype("int64")
    frame["value"] = frame["value"].astype("float64")
    frame["trainable_pretrain_params"] = frame["trainable_pretrain_params"].astype("Int64")
    return frame


def _single_value(group: pd.DataFrame, column: str, key: tuple) -> Any:
    """The one value ``column`` takes over ``group``; an error naming it when runs disagree."""
    values = group[column].drop_duplicates().tolist()
    if len(values) != 1:
        config = dict(zip(GROUP_KEYS, key))
        files = ", ".join(group["path"])
        raise ValueError(f"runs of {config} disagree on {column!r} ({values}); files: {files}")
    return values[0]


def _summarise_group(key: tuple, group: pd.DataFrame) -> dict[str, Any]:
    duplicated = group["seed"][group["seed"].duplicated()].tolist()
    if duplicated:
        # Two files for one seed would silently weight that seed twice (often a stale file).
        raise ValueError(f"runs of {dict(zip(GROUP_KEYS, key))} repeat seed(s) {duplicated}; "
                         f"files: {', '.join(group['path'])}")
    row: dict[str, Any] = dict(zip(GROUP_KEYS, key))
    for column in CARRIED:
        row[column] = _single_value(group, column, key)
    values = group["value"]
    row["mean"] = float(values.mean())
    row["std"] = float(values.std(ddof=1)) if len(values) > 1 else math.nan
    row["n_runs"] = len(values)
    row["seeds"] = " ".join(str(seed) for seed in sorted(group["seed"]))
    return row


def summarise(results: pd.DataFrame) -> pd.DataFrame:
    """Average runs over seeds: one row per (protocol, benchmark, backbone, variant, init, metric).

    Columns: the group keys (``metric`` among them: a segmentation run's mIoU and mAcc are
    summarised separately); ``suite``, ``image_backbone`` and ``trainable_pretrain_params``
    (which must agree across the group's runs); ``mean``; ``std`` — the *sample* standard
    deviation (ddof=1), NaN when the group has a single run (n=1: no spread can be estimated,
    and 0 would claim a precision that was never measured); ``n_runs``; ``seeds``
    (space-separated, sorted).

    Raises:
        ValueError: when the runs of one configuration disagree on ``suite``,
            ``image_backbone`` or ``trainable_pretrain_params`` (the message names the column
            and the files), or repeat a seed.
    """
    if results.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    rows = [_summarise_group(key, group)
            for key, group in results.groupby(GROUP_KEYS, sort=False, dropna=False)]
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    summary["n_runs"] = summary["n_runs"].astype("int64")
    summary["trainable_pretrain_params"] = summary["trainable_pretrain_params"].astype("Int64")
    return summary
