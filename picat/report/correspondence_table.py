"""The correspondence metric's tables: ``results/tables/correspondence.csv`` and its rows of
``results/tables.csv``. Picat-only: the paper reports no such number (its Figure 4 is pictures).

One result JSON per checkpoint (``picat correspondence``, :mod:`picat.report.correspondence`);
the seeds of one (backbone, variant) are averaged: mean, sample standard deviation (ddof 1,
NaN for a single seed) and n over seeds, for every predictor (the model and its baselines)
and metric (view/batch top-1/top-5).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from picat.atomic import atomic_path
from picat.report.correspondence import METRICS, PREDICTORS

TABLE = "correspondence"
BENCHMARK = "heldout_objects"
PREDICTOR_LABELS = {"model": "own embedding", "object_mean": "object-mean baseline",
                    "mask_prior": "mask-prior baseline (model-free)", "neighbour_cell": "neighbour-cell control",
                    "chance": "chance"}
BACKBONE_LABELS = {"dgcnn": "DGCNN", "pointnext": "PointNeXt-S"}
_REQUIRED = ("suite", "backbone", "variant", "seed", "image_backbone", "cells", "batch_size", "n_centres",
             "n_object_views", "n_objects", "metrics", "checkpoint")
WIDE_COLUMNS = ("suite", "backbone", "variant", "predictor", *[f"{m}{suffix}" for m in METRICS
                                                             for suffix in ("", "_std")],
                "n_seeds", "seeds", "n_centres", "n_object_views", "n_objects", "cells", "batch_size",
                "image_weights", "source")


def _source(suite: str) -> str:
    return f"picat ({suite} suite); not in the paper: own-cell retrieval on held-out objects (picat-only)"


def load_correspondence(paths: Sequence[Path]) -> pd.DataFrame:
    """One row per (result file, predictor, metric): suite, backbone, variant, seed, predictor,
    metric, value (percent), n_centres, n_object_views, n_objects, cells, batch_size, image_weights.

    Raises:
        ValueError: a file is not valid JSON or lacks a key or a rate, naming the file and the key.
    """
    rows = []
    for path in map(Path, paths):
        try:
            result = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not a valid correspondence result ({error})") from None
        missing = [key for key in _REQUIRED if key not in result]
        if missing:
            raise ValueError(f"{path}: correspondence result lacks key(s) {', '.join(missing)}")
        image = result["image_backbone"] or {}
        for predictor in PREDICTORS:
            for metric in METRICS:
                value = result["metrics"].get(predictor, {}).get(metric, "missing")
                if value == "missing":
                    raise ValueError(f"{path}: correspondence result lacks metrics.{predictor}.{metric}")
                rows.append({
                    "suite": result["suite"], "backbone": result["backbone"], "variant": result["variant"],
                    "seed": int(result["seed"]), "predictor": predictor, "metric": metric,
                    "value": math.nan if value is None else float(value), "n_centres": result["n_centres"],
                    "n_object_views": result["n_object_views"], "n_objects": result["n_objects"],
                    "cells": result["cells"], "batch_size": result["batch_size"],
                    "image_weights": f"{image.get('name')}/{image.get('weights')}", "path": str(path),
                })
    return pd.DataFrame(rows)


def _summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean/std/n over seeds per (suite, backbone, variant, predictor, metric)."""
    keys = ["suite", "backbone", "variant", "predictor", "metric"]
    rows = []
    for key, group in frame.groupby(keys, sort=False):
        repeated = group["seed"][group["seed"].duplicated()].tolist()
        if repeated:
            raise ValueError(f"correspondence results of {dict(zip(keys, key, strict=True))} repeat seed(s) "
                             f"{repeated}; files: {', '.join(group['path'])}")
        values = group["value"].dropna()
        rows.append({**dict(zip(keys, key, strict=True)), "mean": float(values.mean()) if len(values) else math.nan,
                     "std": float(values.std(ddof=1)) if len(values) > 1 else math.nan, "n_runs": len(values),
                     "seeds": " ".join(str(seed) for seed in sorted(group["seed"])),
                     # The centres and object-views are the same for every seed of a backbone (the held-out
                     # clouds and the backbone's FPS do not depend on the weights); the mean says so if not.
                     "n_centres": float(group["n_centres"].mean()),
                     "n_object_views": float(group["n_object_views"].mean()),
                     "n_objects": int(group["n_objects"].max()), "cells": int(group["cells"].max()),
                     "batch_size": int(group["batch_size"].max()),
                     "image_weights": "; ".join(dict.fromkeys(group["image_weights"]))})
    return pd.DataFrame(rows)


def correspondence_table(paths: Sequence[Path]) -> pd.DataFrame:
    """``correspondence.csv``: one row per (suite, backbone, variant, predictor), columns
    :data:`WIDE_COLUMNS` (each metric's mean over seeds and its ``_std``; n_seeds and seeds)."""
    summary = _summary(load_correspondence(paths))
    rows = []
    for key, group in summary.groupby(["suite", "backbone", "variant", "predictor"], sort=False):
        suite, backbone, variant, predictor = key
        first = group.iloc[0]
        row: dict[str, Any] = {"suite": suite, "backbone": backbone, "variant": variant, "predictor": predictor}
        for metric in METRICS:
            found = group[group["metric"] == metric]
            row[metric] = found["mean"].iloc[0] if len(found) else math.nan
            row[f"{metric}_std"] = found["std"].iloc[0] if len(found) else math.nan
        row.update({"n_seeds": int(group["n_runs"].max()), "seeds": first["seeds"], "n_centres": first["n_centres"],
                    "n_object_views": first["n_object_views"], "n_objects": first["n_objects"],
                    "cells": first["cells"], "batch_size": first["batch_size"],
                    "image_weights": first["image_weights"], "source": _source(suite)})
        rows.append(row)
    return pd.DataFrame(rows, columns=list(WIDE_COLUMNS))


def correspondence_long_rows(paths: Sequence[Path], long_columns: Sequence[str]) -> pd.DataFrame:
    """The rows ``results/tables.csv`` gets: table ``correspondence``, benchmark ``heldout_objects``,
    one row per (backbone, variant, predictor, metric) with its mean, std and n over seeds;
    ``paper_value`` empty and ``source`` saying that the paper has no such number."""
    summary = _summary(load_correspondence(paths))
    rows = []
    for record in summary.itertuples(index=False):
        label = BACKBONE_LABELS.get(record.backbone, record.backbone)
        rows.append({
            "table": TABLE, "benchmark": BENCHMARK,
            "method": f"{label}+Pic@Point {record.variant}: {PREDICTOR_LABELS[record.predictor]} (picat)",
            "backbone": record.backbone, "variant": record.variant, "init": "pic@point", "metric": record.metric,
            "value": record.mean, "std": record.std, "n_runs": record.n_runs, "paper_value": math.nan,
            "suite": record.suite, "image_weights": record.image_weights, "params_m": math.nan,
            "source": _source(record.suite),
        })
    frame = pd.DataFrame(rows, columns=list(long_columns))
    frame["n_runs"] = frame["n_runs"].astype("Int64")
    return frame


def write_correspondence_tables(paths: Sequence[Path], out_csv: Path, out_long: Path) -> None:
    """Write ``correspondence.csv`` and append the metric's rows to the long table ``out_long``
    (already written by the paper tables), each atomically."""
    with atomic_path(Path(out_csv)) as temporary:
        correspondence_table(paths).to_csv(temporary, index=False)
    long = pd.read_csv(out_long, keep_default_na=True)
    extra = correspondence_long_rows(paths, list(long.columns))
    merged = pd.concat([long, extra], ignore_index=True) if len(long) else extra
    merged["n_runs"] = merged["n_runs"].astype("Int64")
    with atomic_path(Path(out_long)) as temporary:
        merged.to_csv(temporary, index=False)
