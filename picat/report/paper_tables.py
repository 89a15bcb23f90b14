"""The paper's tables, with picat's measured results set beside the paper's numbers.

Two artefacts:

* the *long* table (``results/tables.csv``): one row per (table, benchmark, method, backbone,
  init, metric), measured rows carrying the paper's value of the row they reproduce, and the
  paper's other rows (competing methods) with no measured value;
* the *wide*, paper-shaped tables (``results/tables/tableN.csv``): Tables 1-2 (a column group
  per benchmark), Table 3 (the ablation), Tables 4-5 (segmentation: a column group per metric).

Runs of an imported outside checkpoint (init ``imported``, the import's name as ``variant``:
``<suite>.imported`` in config.yaml) are rows of their own in the methods-style tables of their
protocol and backbone, labelled ``<backbone> imported: <name> (picat)``, with no paper value:
they are never averaged with Pic@Point's runs, nor matched with a paper row (the paper's own
CrossPoint row stays a row of its own beside a measured import of CrossPoint's weights).

Which measured runs go into which table is data (:data:`TABLE_SPECS`), and the paper's numbers
are data (``paper_tables.csv``), so adding a table means adding its spec, its paper rows, and
its benchmarks/metrics to :mod:`picat.report.results`.
"""

from __future__ import annotations

import importlib.resources
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from picat.atomic import atomic_path
from picat.report.results import load_results, summarise

LONG_COLUMNS = ["table", "benchmark", "method", "backbone", "variant", "init", "metric", "value", "std",
                "n_runs", "paper_value", "suite", "image_weights", "params_m", "source"]
PAPER_COLUMNS = ["table", "benchmark", "method", "backbone", "variant", "init", "metric", "paper_value",
                 "params_m", "source"]
# The columns on which a measured configuration finds the paper row it reproduces.
MATCH_KEYS = ["table", "benchmark", "backbone", "variant", "init", "metric"]
BACKBONE_LABELS = {"dgcnn": "DGCNN", "pointnext": "PointNeXt-S"}
# Column-group names of the wide tables that show several metrics (the paper's headers).
METRIC_LABELS = {"overall_accuracy": "OA (%)", "instance_miou": "ins. mIoU (%)", "class_miou": "cls. mIoU (%)",
                 "miou": "mIoU (%)", "macc": "mAcc (%)"}
WIDE_DECIMALS = 2


@dataclass(frozen=True)
class TableSpec:
    """Which measured runs make up one paper table, and how its wide form is shaped.

    Attributes:
        name: ``table1``, ``table2``, ...
        protocol: the downstream protocol of its runs (``svm`` / ``finetune``).
        benchmarks: its benchmarks, in the paper's column order.
        backbone: the point backbone of its runs.
        baseline_init: the init of its non-pre-trained baseline (``random`` / ``scratch``).
        variants: the pre-training variants it shows (``None``: every variant measured).
        style: ``methods`` (rows = methods, a column group per benchmark, or per metric when
            the table shows several metrics) or ``ablation`` (rows = variants, with the
            paper's ✓/× component columns).
        metrics: the metrics it shows, in the paper's column order; other metrics the runs
            recorded (e.g. S3DIS overall accuracy) are left out.
        baseline_reference: the paper row (method name) that the baseline is compared with
            when the paper has no reproduction of its own (Table 4: DGCNN's published
            result); ``None``: only the authors' own rows (:func:`is_paper_own_row`) match.
    """

    name: str
    protocol: str
    benchmarks: tuple[str, ...]
    backbone: str
    baseline_init: str
    variants: tuple[str, ...] | None
    style: str
    metrics: tuple[str, ...] = ("overall_accuracy",)
    baseline_reference: str | None = None


TABLE_SPECS: tuple[TableSpec, ...] = (
    TableSpec("table1", "svm", ("modelnet40", "scanobjectnn_obj_bg"), "dgcnn", "random",
              ("full", "normals"), "methods"),
    TableSpec("table2", "finetune", ("scanobjectnn_obj_bg", "scanobjectnn_obj_only", "scanobjectnn_pb_t50_rs"),
              "pointnext", "scratch", None, "methods"),
    TableSpec("table3", "svm", ("modelnet40",), "dgcnn", "random", None, "ablation"),
    TableSpec("table4", "partseg", ("shapenetpart",), "dgcnn", "scratch", None, "methods",
              metrics=("instance_miou", "class_miou"), baseline_reference="DGCNN (Wang et al. 2019)"),
    TableSpec("table5", "semseg", ("s3dis",), "pointnext", "scratch", None, "methods", metrics=("miou", "macc")),
)

# Table 3's component columns: the variant that switches each component off (or, for
# normals, on). Rows without a variant (the random-init baseline) get empty cells.
ABLATION_FLAGS = {"L_lcl": "no_local", "L_glb": "no_global", "pose": "no_pose", "normals": "normals"}


def load_paper_tables() -> pd.DataFrame:
    """The paper's Tables 1-5 (``paper_tables.csv``, shipped as package data).

    Empty text cells stay ``""``; an empty ``params_m`` becomes NaN.
    """
    resource = importlib.resources.files("picat.report").joinpath("paper_tables.csv")
    with resource.open("r", encoding="utf-8") as handle:
        paper = pd.read_csv(handle, dtype=str, keep_default_na=False)
    if list(paper.columns) != PAPER_COLUMNS:
        raise ValueError(f"paper_tables.csv has columns {list(paper.columns)}, expected {PAPER_COLUMNS}")
    paper["paper_value"] = pd.to_numeric(paper["paper_value"])
    paper["params_m"] = pd.to_numeric(paper["params_m"].replace("", math.nan))
    return paper


def is_paper_own_row(method: str) -> bool:
    """Whether a paper row is one the Pic@Point authors produced themselves.

    Only such rows can be reproduced by picat. The distinction matters where a competitor
    shares the match key: Table 2 lists both PointNeXt-S as published (Qian et al.) and the
    authors' own "PointNeXt-S (reproduce)", both trained from scratch; picat's scratch run
    reproduces the latter (likewise in Table 5). Where the paper has no own baseline row, a
    spec may name the competitor row its baseline is compared with
    (:attr:`TableSpec.baseline_reference`).
    """
    return "Pic@Point" in method or "(reproduce)" in method


def imported_method_name(backbone: str, name: str) -> str:
    """The method label of an imported checkpoint's runs, e.g. ``DGCNN imported: crosspoint (picat)``."""
    return f"{BACKBONE_LABELS.get(backbone, backbone)} imported: {name} (picat)"


def measured_source(suite: str, init: str, variant: str, paper_source: str | None, who: str = "picat") -> str:
    """The long table's ``source`` cell of a measured row: who measured it (``who``: "picat
    only" for a picat-only table) and what it is, or the paper row it is compared with."""
    if init == "imported":
        return f"{who} ({suite} suite); imported checkpoint {variant!r}, not a Pic@Point run; not in the paper"
    if paper_source is not None:
        return f"{who} ({suite} suite); paper_value from {paper_source}"
    return f"{who} ({suite} suite); not in the paper"


def _method_name(spec: TableSpec, backbone: str, variant: str, init: str) -> str:
    """A readable method name for a measured configuration, e.g. ``DGCNN+Pic@Point (picat)``."""
    label = BACKBONE_LABELS.get(backbone, backbone)
    if init == "random":
        return f"{label} random init (picat)"
    if init == "scratch":
        return f"{label} scratch (picat)"
    if init == "imported":
        return imported_method_name(backbone, variant)
    if spec.style == "ablation":
        return f"Pic@Point {variant} (picat)"
    suffix = {"full": "", "normals": " w/ normals"}.get(variant, f" {variant}")
    return f"{label}+Pic@Point{suffix} (picat)"


def _select_measured(spec: TableSpec, summary: pd.DataFrame) -> pd.DataFrame:
    """The summary rows that belong to ``spec``'s table."""
    base = ((summary["protocol"] == spec.protocol) & summary["benchmark"].isin(spec.benchmarks)
            & (summary["backbone"] == spec.backbone) & summary["metric"].isin(spec.metrics))
    pretrained = summary["init"] == "pic@point"
    if spec.variants is not None:
        pretrained &= summary["variant"].isin(spec.variants)
    baseline = summary["init"] == spec.baseline_init
    # Imports are methods beside Pic@Point's, not rows of an ablation of its components.
    imported = (summary["init"] == "imported") & (spec.style == "methods")
    return summary[base & (pretrained | baseline | imported)]


def _measured_rows(spec: TableSpec, measured: pd.DataFrame, own: pd.DataFrame) -> tuple[list[dict], set[int]]:
    """Long-table rows for ``spec``'s measured configurations, and the paper rows they matched.

    Each row also gets an ``_order``: its matched paper row's position, so that it stands where
    the paper printed it; unmatched rows (baselines the paper does not report) come last.
    """
    rows, matched = [], set()
    for record in measured.itertuples(index=False):
        key = (spec.name, record.benchmark, record.backbone, record.variant, record.init, record.metric)
        hits = own[(own[MATCH_KEYS] == pd.Series(key, index=MATCH_KEYS)).all(axis=1)]
        if len(hits) > 1:
            raise ValueError(f"paper_tables.csv has {len(hits)} rows for {dict(zip(MATCH_KEYS, key, strict=True))}")
        paper_row = hits.iloc[0] if len(hits) else None
        if paper_row is not None:
            matched.add(paper_row.name)
        # A random/scratch backbone never saw image features, whatever its file says; an
        # imported one says what its checkpoint recorded (nothing, for a converted one).
        pretrained = record.init in ("pic@point", "imported")
        rows.append({
            "table": spec.name, "benchmark": record.benchmark,
            "method": _method_name(spec, record.backbone, record.variant, record.init),
            "backbone": record.backbone, "variant": record.variant, "init": record.init,
            "metric": record.metric, "value": record.mean, "std": record.std, "n_runs": record.n_runs,
            "paper_value": paper_row["paper_value"] if paper_row is not None else math.nan,
            "suite": record.suite,
            "image_weights": record.image_backbone if pretrained else "",
            "params_m": paper_row["params_m"] if paper_row is not None else math.nan,
            "source": measured_source(record.suite, record.init, record.variant,
                                      None if paper_row is None else paper_row["source"]),
            "_order": paper_row.name if paper_row is not None else math.inf,
        })
    return rows, matched


def _paper_only_rows(paper_rows: pd.DataFrame, matched: set[int]) -> list[dict]:
    """Long-table rows for the paper rows no measured configuration reproduced."""
    rows = []
    for index, row in paper_rows.drop(index=list(matched)).iterrows():
        rows.append({**{column: row[column] for column in PAPER_COLUMNS}, "value": math.nan, "std": math.nan,
                     "n_runs": pd.NA, "suite": "", "image_weights": "", "_order": index})
    return rows


def _position(order: tuple[str, ...], value: str) -> int:
    """``value``'s place in the spec's column order (0 for a value outside it)."""
    return order.index(value) if value in order else 0


def _single_suite(summary: pd.DataFrame) -> None:
    suites = sorted(set(summary["suite"]))
    if len(suites) > 1:
        # A demo number next to a paper-suite number in one table would read as one experiment.
        raise ValueError(f"results from several suites ({', '.join(suites)}) cannot be collated into one "
                         "set of tables; report each suite's results separately")


def build_long_table(summary: pd.DataFrame, paper: pd.DataFrame,
                     specs: Sequence[TableSpec] = TABLE_SPECS) -> pd.DataFrame:
    """The long table: measured rows beside the paper's rows, for every table with results.

    Args:
        summary: the output of :func:`picat.report.results.summarise`.
        paper: the output of :func:`load_paper_tables`.
        specs: which runs make up which table (default: Tables 1-5).

    A measured row carries the ``paper_value`` (and ``params_m``) of the paper row it
    reproduces (NaN where the paper has none, e.g. random init); that paper row is then not
    repeated. The paper's remaining rows of the table (other methods) follow with empty
    ``value``/``std``/``n_runs``/``suite``. A table without any measured row is left out
    entirely. Rows keep the paper's order; baselines the paper lacks come last.

    Raises:
        ValueError: when the summary mixes suites.
    """
    _single_suite(summary)
    rows: list[dict] = []
    for spec in specs:
        measured = _select_measured(spec, summary)
        if measured.empty:
            continue
        paper_rows = paper[paper["table"] == spec.name]
        own = paper_rows[paper_rows["method"].map(is_paper_own_row)
                         | (paper_rows["method"] == spec.baseline_reference)]
        table_rows, matched = _measured_rows(spec, measured, own)
        table_rows += _paper_only_rows(paper_rows, matched)
        table_rows.sort(key=lambda row: (row["_order"], _position(spec.benchmarks, row["benchmark"]),
                                         _position(spec.metrics, row["metric"]), row["method"]))
        rows += table_rows
    long = pd.DataFrame(rows, columns=[*LONG_COLUMNS, "_order"]).drop(columns="_order")
    for column in ("value", "std", "paper_value", "params_m"):
        long[column] = long[column].astype("float64")
    long["n_runs"] = long["n_runs"].astype("Int64")
    return long.reset_index(drop=True)


def _spec(name: str, specs: Sequence[TableSpec]) -> TableSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise KeyError(f"no table spec named {name!r}")


def _joined(values: Iterable[str]) -> str:
    """The distinct non-empty values, in order, joined (a method row spans several benchmarks)."""
    return "; ".join(dict.fromkeys(value for value in values if value))


def _metric_columns(prefix: str, rows: pd.DataFrame) -> dict[str, object]:
    """The measured/std/n/paper cells of one method on one benchmark (empty when absent)."""
    if rows.empty:
        return {prefix: math.nan, f"{prefix}_std": math.nan, f"{prefix}_n": pd.NA, f"{prefix}_paper": math.nan}
    row = rows.iloc[0]
    return {prefix: row["value"], f"{prefix}_std": row["std"], f"{prefix}_n": row["n_runs"],
            f"{prefix}_paper": row["paper_value"]}


def _ablation_flags(variant: str) -> dict[str, str]:
    """Table 3's ✓/× cells for a variant; empty for a row without pre-training."""
    if not variant:
        return {flag: "" for flag in ABLATION_FLAGS}
    flags = {flag: "×" if variant == off else "✓" for flag, off in ABLATION_FLAGS.items() if flag != "normals"}
    flags["normals"] = "✓" if variant == "normals" else "×"
    return flags


def _column_groups(spec: TableSpec) -> list[tuple[str, str, str]]:
    """The wide table's column groups as (benchmark, metric, prefix), in the paper's order.

    Ablation: ``OA``; one metric: the benchmark's name (Tables 1-2); several metrics: the
    metric's paper header (Tables 4-5), prefixed by the benchmark if there are several.
    """
    if spec.style == "ablation":
        return [(benchmark, metric, "OA") for benchmark in spec.benchmarks for metric in spec.metrics]
    if len(spec.metrics) == 1:
        return [(benchmark, spec.metrics[0], benchmark) for benchmark in spec.benchmarks]
    return [(benchmark, metric, METRIC_LABELS.get(metric, metric) if len(spec.benchmarks) == 1
             else f"{benchmark} {METRIC_LABELS.get(metric, metric)}")
            for benchmark in spec.benchmarks for metric in spec.metrics]


def _wide_table(spec: TableSpec, long: pd.DataFrame) -> pd.DataFrame:
    """One paper-shaped table from its long rows: a row per method, in the long table's order."""
    rows = []
    with_params = long["params_m"].notna().any()
    for method, group in long.groupby("method", sort=False):
        row: dict[str, object] = {"method": method}
        if spec.style == "ablation":
            row["variant"] = group["variant"].iloc[0]
            row.update(_ablation_flags(row["variant"]))
        if with_params:
            row["params_m"] = group["params_m"].dropna().iloc[0] if group["params_m"].notna().any() else math.nan
        for benchmark, metric, prefix in _column_groups(spec):
            row.update(_metric_columns(prefix, group[(group["benchmark"] == benchmark)
                                                     & (group["metric"] == metric)]))
        row["suite"] = _joined(group["suite"])
        row["image_weights"] = _joined(group["image_weights"])
        rows.append(row)
    wide = pd.DataFrame(rows)
    for column in wide.columns:
        if column.endswith("_n"):
            wide[column] = wide[column].astype("Int64")
        elif wide[column].dtype.kind == "f":
            wide[column] = wide[column].round(WIDE_DECIMALS)
    return wide


def build_wide_tables(long: pd.DataFrame, specs: Sequence[TableSpec] = TABLE_SPECS) -> dict[str, pd.DataFrame]:
    """The paper-shaped tables, keyed by table name, for the tables present in ``long``.

    * ``methods`` tables with one metric (1, 2): ``method``, [``params_m``,] then per benchmark
      ``<bench>``, ``<bench>_std``, ``<bench>_n``, ``<bench>_paper``; then ``suite``,
      ``image_weights``.
    * ``methods`` tables with several metrics (4, 5): ``method``, then per metric its paper
      header — ``ins. mIoU (%)``, ``ins. mIoU (%)_std``, ``ins. mIoU (%)_n``,
      ``ins. mIoU (%)_paper``, then ``cls. mIoU (%)``... (Table 5: ``mIoU (%)``, ``mAcc (%)``) —
      then ``suite``, ``image_weights``.
    * ``ablation`` table (3): ``method``, ``variant``, ``L_lcl``, ``L_glb``, ``pose``,
      ``normals`` (✓/×, as in the paper; empty for the random-init baseline), ``OA``,
      ``OA_std``, ``OA_n``, ``OA_paper``, ``suite``, ``image_weights``.

    Accuracies and mIoUs are rounded to 2 decimals (the long table keeps full precision).
    """
    tables = {}
    for name in dict.fromkeys(long["table"]):
        tables[name] = _wide_table(_spec(name, specs), long[long["table"] == name])
    return tables


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as temporary:
        frame.to_csv(temporary, index=False)


def write_tables(result_paths: Iterable[str | Path], out_long: Path, out_dir: Path) -> None:
    """Read the result files and write the long table and the paper-shaped tables.

    Writes ``out_long`` and ``out_dir/<table>.csv`` for each table that has measured rows,
    each atomically. A ``<table>.csv`` in ``out_dir`` for a known table that has no measured
    rows now (left by an earlier run) is removed, so the folder never shows a table this run
    did not produce.

    Raises:
        ValueError: when ``result_paths`` is empty, or a result file is malformed
            (:class:`picat.report.results.ResultFileError`).
    """
    paths = list(result_paths)
    if not paths:
        raise ValueError("no result files to collate")
    write_summary_tables(summarise(load_results(paths)), out_long, out_dir)


def write_summary_tables(summary: pd.DataFrame, out_long: Path, out_dir: Path,
                         extra_long: pd.DataFrame | None = None) -> None:
    """:func:`write_tables` for results already loaded and summarised (``summarise``'s output).

    ``extra_long``: rows of picat-only tables (columns :data:`LONG_COLUMNS`, e.g.
    :func:`picat.report.fewshot_table.fewshot_long_rows`) appended to the long table after the
    paper's tables; their shaped tables are written by their own modules.
    """
    long = build_long_table(summary, load_paper_tables())
    wide = build_wide_tables(long)
    if extra_long is not None and len(extra_long):
        if list(extra_long.columns) != LONG_COLUMNS:
            raise ValueError(f"extra long-table rows have columns {list(extra_long.columns)}, expected {LONG_COLUMNS}")
        long = pd.concat([long, extra_long], ignore_index=True) if len(long) else extra_long.reset_index(drop=True)
    _write_csv(long, Path(out_long))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, table in wide.items():
        _write_csv(table, out_dir / f"{name}.csv")
    for spec in TABLE_SPECS:
        if spec.name not in wide:
            (out_dir / f"{spec.name}.csv").unlink(missing_ok=True)
