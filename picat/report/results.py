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

from picat.downstream.records import REQUIRED_KEYS, record_error, validate_records

# The columns that identify one summary row: one configuration's one metric. Records that share
# them differ only in their seed (``metric`` is a key because a segmentation run records several).
GROUP_KEYS = ["protocol", "benchmark", "backbone", "variant", "init", "metric"]
# Columns that must agree across the seeds of one configuration and are carried into the summary.
CARRIED = ["suite", "image_backbone", "trainable_pretrain_params"]
RESULT_COLUMNS = [*REQUIRED_KEYS, "checkpoint", "path"]
SUMMARY_COLUMNS = [*GROUP_KEYS, *CARRIED, "mean", "std", "n_runs", "seeds"]


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
            raise record_error(path, None, f"cannot be read ({error})") from error
        except json.JSONDecodeError as error:
            raise record_error(path, None, f"is not valid JSON ({error})") from error
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
        config = dict(zip(GROUP_KEYS, key, strict=True))
        files = ", ".join(group["path"])
        raise ValueError(f"runs of {config} disagree on {column!r} ({values}); files: {files}")
    return values[0]


def _summarise_group(key: tuple, group: pd.DataFrame) -> dict[str, Any]:
    duplicated = group["seed"][group["seed"].duplicated()].tolist()
    if duplicated:
        # Two files for one seed would silently weight that seed twice (often a stale file).
        raise ValueError(f"runs of {dict(zip(GROUP_KEYS, key, strict=True))} repeat seed(s) {duplicated}; "
                         f"files: {', '.join(group['path'])}")
    row: dict[str, Any] = dict(zip(GROUP_KEYS, key, strict=True))
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
