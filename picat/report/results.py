"""Reading the downstream runs' result files and averaging them over seeds.

Every downstream run (linear SVM or fine-tuning) writes one JSON file; this module turns a set
of them into a DataFrame (:func:`load_results`) and a per-configuration summary over seeds
(:func:`summarise`). Validation is strict on purpose: a table built from a half-written or
stale result file is worse than a failed rule, so every problem names the file and the key.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

PROTOCOLS = ("svm", "finetune")
BENCHMARKS = ("modelnet40", "scanobjectnn_obj_bg", "scanobjectnn_obj_only", "scanobjectnn_pb_t50_rs")
BACKBONES = ("dgcnn", "pointnext")
VARIANTS = ("full", "no_local", "no_global", "no_pose", "normals")
INITS = ("pic@point", "random", "scratch")
METRICS = ("overall_accuracy",)
SUITES = ("demo", "paper")

# The keys a result file must have. ``checkpoint`` and ``details`` are optional: a random-init
# or from-scratch run has no pre-training checkpoint, and ``details`` is free-form.
REQUIRED_KEYS = ("protocol", "benchmark", "backbone", "variant", "init", "seed", "metric", "value",
                 "suite", "image_backbone", "trainable_pretrain_params")

# The columns that identify one configuration; runs that share them differ only in their seed.
GROUP_KEYS = ["protocol", "benchmark", "backbone", "variant", "init"]
# Columns that must agree across the seeds of one configuration and are carried into the summary.
CARRIED = ["metric", "suite", "image_backbone", "trainable_pretrain_params"]

RESULT_COLUMNS = [*REQUIRED_KEYS, "checkpoint", "path"]
SUMMARY_COLUMNS = [*GROUP_KEYS, *CARRIED, "mean", "std", "n_runs", "seeds"]


class ResultFileError(ValueError):
    """A result file that cannot be read or that breaks the result format."""


def _fail(path: Path, key: str | None, problem: str) -> ResultFileError:
    where = f"{path}: key {key!r}: " if key else f"{path}: "
    return ResultFileError(where + problem)


def _require_choice(path: Path, record: dict[str, Any], key: str, choices: tuple[str, ...],
                    nullable: bool = False) -> None:
    value = record[key]
    if value is None and nullable:
        return
    if value not in choices:
        allowed = ", ".join(choices) + (", null" if nullable else "")
        raise _fail(path, key, f"{value!r} is not one of {allowed}")


def _validate_types(path: Path, record: dict[str, Any]) -> None:
    """Check the numeric and free-text keys (bools are rejected: JSON ``true`` is no seed)."""
    seed = record["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _fail(path, "seed", f"{seed!r} is not a non-negative integer")
    value = record["value"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(path, "value", f"{value!r} is not a finite number")
    if not 0.0 <= value <= 100.0:
        raise _fail(path, "value", f"{value!r} is not a percentage in [0, 100]")
    params = record["trainable_pretrain_params"]
    if params is not None and (isinstance(params, bool) or not isinstance(params, int) or params < 0):
        raise _fail(path, "trainable_pretrain_params", f"{params!r} is not a non-negative integer or null")
    image = record["image_backbone"]
    if image is not None and (not isinstance(image, str) or not image):
        raise _fail(path, "image_backbone", f"{image!r} is not a non-empty string or null")
    checkpoint = record.get("checkpoint")
    if checkpoint is not None and not isinstance(checkpoint, str):
        raise _fail(path, "checkpoint", f"{checkpoint!r} is not a string or null")


def _validate_consistency(path: Path, record: dict[str, Any]) -> None:
    """Check the combinations the format allows: a pre-trained run names its variant, a
    baseline does not, and each baseline belongs to one protocol."""
    init, variant, protocol = record["init"], record["variant"], record["protocol"]
    if init == "pic@point" and variant is None:
        raise _fail(path, "variant", "is null, but a pic@point run must name its pre-training variant")
    if init in ("random", "scratch") and variant is not None:
        raise _fail(path, "variant", f"is {variant!r}, but a {init!r} run has no pre-training variant (expected null)")
    if init == "random" and protocol != "svm":
        raise _fail(path, "init", f"'random' is the linear-SVM baseline, but protocol is {protocol!r}")
    if init == "scratch" and protocol != "finetune":
        raise _fail(path, "init", f"'scratch' is the fine-tuning baseline, but protocol is {protocol!r}")


def validate_record(path: Path, record: Any) -> dict[str, Any]:
    """Check one parsed result file and return the row it contributes.

    Raises:
        ResultFileError: naming ``path`` and the offending key.
    """
    if not isinstance(record, dict):
        raise _fail(path, None, f"expected a JSON object, got {type(record).__name__}")
    for key in REQUIRED_KEYS:
        if key not in record:
            raise _fail(path, key, "missing")
    _require_choice(path, record, "protocol", PROTOCOLS)
    _require_choice(path, record, "benchmark", BENCHMARKS)
    _require_choice(path, record, "backbone", BACKBONES)
    _require_choice(path, record, "variant", VARIANTS, nullable=True)
    _require_choice(path, record, "init", INITS)
    _require_choice(path, record, "metric", METRICS)
    _require_choice(path, record, "suite", SUITES)
    _validate_types(path, record)
    _validate_consistency(path, record)
    row = {key: record[key] for key in REQUIRED_KEYS}
    # Absent variant / image backbone become "" so that they group and print like the paper
    # table's empty cells (pandas drops NaN group keys).
    row["variant"] = row["variant"] or ""
    row["image_backbone"] = row["image_backbone"] or ""
    row["value"] = float(row["value"])
    row["checkpoint"] = record.get("checkpoint") or ""
    row["path"] = str(path)
    return row


def load_results(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per result file, validated.

    Columns: the format's keys (``protocol`` ... ``trainable_pretrain_params``), ``checkpoint``
    and ``path``. A null ``variant``/``image_backbone``/``checkpoint`` becomes ``""``; a null
    ``trainable_pretrain_params`` becomes ``<NA>`` (nullable integer column). ``details`` is not
    carried.

    Raises:
        ResultFileError: when a file cannot be read, is not JSON, misses a key or has a bad
            value; the message names the file and the key.
    """
    rows = []
    for path in map(Path, paths):
        try:
            record = json.loads(path.read_text())
        except OSError as error:
            raise _fail(path, None, f"cannot be read ({error})") from error
        except json.JSONDecodeError as error:
            raise _fail(path, None, f"is not valid JSON ({error})") from error
        rows.append(validate_record(path, record))
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
    """Average runs over seeds: one row per (protocol, benchmark, backbone, variant, init).

    Columns: the group keys; ``metric``, ``suite``, ``image_backbone`` and
    ``trainable_pretrain_params`` (which must agree across the group's runs); ``mean``;
    ``std`` — the *sample* standard deviation (ddof=1), NaN when the group has a single run
    (n=1: no spread can be estimated, and 0 would claim a precision that was never measured);
    ``n_runs``; ``seeds`` (space-separated, sorted).

    Raises:
        ValueError: when the runs of one configuration disagree on ``metric``, ``suite``,
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
