"""The few-shot linear probe's table (picat-only: the paper has no such table).

Two artefacts, both marked as not in the paper:

* rows of the long table ``results/tables.csv``: ``table`` = ``fewshot``, one row per
  (benchmark, backbone, variant/init, shot count), the shot count in the metric
  (``overall_accuracy_5shot``, ``overall_accuracy_all``), ``value``/``std``/``n_runs`` over
  pre-training seeds, no ``paper_value``, and a ``source`` saying "not in the paper";
* ``results/tables/fewshot.csv``: a row per (benchmark, backbone, variant/init), a column per
  shot count with "mean ± std (n)" cells, and a ``note`` column that says what the cells are
  and that the table is picat-only.

Each seed's value is already the mean over that seed's draws (:mod:`picat.downstream.fewshot`);
the cells average those per-seed means over seeds (sample std, ddof=1; no std for one seed).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from picat.atomic import atomic_path
from picat.downstream.records import CLASSIFICATION_BENCHMARKS, VARIANTS, fewshot_shots
from picat.report.paper_tables import BACKBONE_LABELS, LONG_COLUMNS, imported_method_name, measured_source

TABLE = "fewshot"
NOTE = ("picat only, not in the paper: test overall accuracy (%) of a linear SVM on frozen features with k "
        "training objects per category; mean ± sample std (n pre-training seeds) of each seed's mean over its "
        "seeded draws ('all': every training object, one fit, C by CV on train)")
WIDE_KEYS = ["benchmark", "backbone", "variant", "init", "method"]


def _method(backbone: str, variant: str, init: str) -> str:
    label = BACKBONE_LABELS.get(backbone, backbone)
    if init == "imported":
        return imported_method_name(backbone, variant)
    return f"{label} random init (picat)" if init == "random" else f"{label}+Pic@Point {variant} (picat)"


def _source_order(init: str, variant: str) -> tuple[int, str]:
    """Pic@Point's variants in :data:`VARIANTS` order, then imports by name, then random init last."""
    if init == "pic@point":
        return VARIANTS.index(variant) if variant in VARIANTS else len(VARIANTS), ""
    return (len(VARIANTS) + 1, variant) if init == "imported" else (len(VARIANTS) + 2, "")


def _shot_order(shots: int | str) -> float:
    """Shot counts ascending, ``all`` last."""
    return math.inf if shots == "all" else float(shots)


def shot_column(shots: int | str) -> str:
    """The shaped table's column for a shot count: ``1-shot``, ``5-shot``, ..., ``all``."""
    return "all" if shots == "all" else f"{shots}-shot"


def fewshot_long_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The long table's rows for the few-shot probe (columns :data:`LONG_COLUMNS`).

    Args:
        summary: :func:`picat.report.results.summarise`'s output (any protocols; only
            ``fewshot`` rows are used).

    Rows are ordered by benchmark, backbone, pre-trained variants (config order of
    :data:`VARIANTS`), imported checkpoints (by name; init ``imported``, labelled as such) then
    random init, and shot count (``all`` last). Empty when there are no few-shot results.
    """
    measured = summary[summary["protocol"] == TABLE]
    rows = []
    for record in measured.itertuples(index=False):
        shots = fewshot_shots(record.metric)
        if shots is None:
            raise ValueError(f"few-shot results carry metric {record.metric!r}, which names no shot count")
        pretrained = record.init in ("pic@point", "imported")  # random init never saw image features
        rows.append({
            "table": TABLE, "benchmark": record.benchmark,
            "method": _method(record.backbone, record.variant, record.init), "backbone": record.backbone,
            "variant": record.variant, "init": record.init, "metric": record.metric, "value": record.mean,
            "std": record.std, "n_runs": record.n_runs, "paper_value": math.nan, "suite": record.suite,
            "image_weights": record.image_backbone if pretrained else "", "params_m": math.nan,
            "source": measured_source(record.suite, record.init, record.variant, None, who="picat only"),
            "_order": (CLASSIFICATION_BENCHMARKS.index(record.benchmark) if record.benchmark in
                       CLASSIFICATION_BENCHMARKS else len(CLASSIFICATION_BENCHMARKS), record.backbone,
                       *_source_order(record.init, record.variant), _shot_order(shots)),
        })
    rows.sort(key=lambda row: row["_order"])
    long = pd.DataFrame(rows, columns=[*LONG_COLUMNS, "_order"]).drop(columns="_order")
    for column in ("value", "std", "paper_value", "params_m"):
        long[column] = long[column].astype("float64")
    long["n_runs"] = long["n_runs"].astype("Int64")
    return long.reset_index(drop=True)


def format_cell(mean: float, std: float, n: int) -> str:
    """``"88.31 ± 3.99 (3)"``; without the ± part when std is undefined (one seed)."""
    if pd.isna(std):
        return f"{mean:.2f} ({n})"
    return f"{mean:.2f} ± {std:.2f} ({n})"


def fewshot_wide_table(long: pd.DataFrame) -> pd.DataFrame:
    """The shaped table from :func:`fewshot_long_rows`' rows.

    Columns: ``benchmark``, ``backbone``, ``variant`` (empty for random init), ``init``,
    ``method``, one column per shot count measured (``1-shot``, ``5-shot``, ``10-shot``,
    ``all``; "mean ± std (n)" strings, empty where a configuration lacks that count),
    ``suite``, ``image_weights``, ``note`` (:data:`NOTE`, on every row).
    """
    rows = long[long["table"] == TABLE]
    shots = sorted({fewshot_shots(metric) for metric in rows["metric"]}, key=_shot_order)
    wide = []
    for key, group in rows.groupby(WIDE_KEYS, sort=False):
        row: dict[str, object] = dict(zip(WIDE_KEYS, key, strict=True))
        cells = {fewshot_shots(r.metric): format_cell(r.value, r.std, r.n_runs) for r in group.itertuples()}
        row.update({shot_column(count): cells.get(count, "") for count in shots})
        row["suite"] = "; ".join(dict.fromkeys(group["suite"]))
        row["image_weights"] = "; ".join(dict.fromkeys(w for w in group["image_weights"] if w))
        row["note"] = NOTE
        wide.append(row)
    return pd.DataFrame(wide, columns=[*WIDE_KEYS, *map(shot_column, shots), "suite", "image_weights", "note"])


def write_fewshot_table(long: pd.DataFrame, out_csv: Path) -> None:
    """Write :func:`fewshot_wide_table` atomically; remove a stale ``out_csv`` when there are no few-shot rows."""
    out_csv = Path(out_csv)
    if not (long["table"] == TABLE).any():
        out_csv.unlink(missing_ok=True)
        return
    with atomic_path(out_csv) as temporary:
        fewshot_wide_table(long).to_csv(temporary, index=False)
