"""Check issue 12's goal on a finished evidence run: pre-trained vs random init, with 95% intervals.

Reads the per-seed downstream records (``results/downstream/<suite>/{svm,fewshot}/**/seed*.json``)
and the correspondence results (``results/correspondence/<suite>/*/seed*.json``) that
``snakemake results/tables.csv --config suite=evidence`` writes, and prints, per (protocol, benchmark, metric, variant):
mean over seeds, the 95% Student-t interval of the mean, and n, for Pic@Point and random init;
then whether the goal holds:

- pre-trained beats random init by at least 5 points on the few-shot probe (5 per category)
  and on at least one scan-like stand-in (OBJ_BG, OBJ_ONLY, PB_T50_RS), with 95% intervals
  over seeds that do not overlap;
- ``full`` beats ``no_pose`` on correspondence top-1 (own cell among the view's cells).

Usage::

    python benchmarks/evidence_goal.py --results results --suite evidence [--markdown out.md]
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

SCAN_BENCHMARKS = ("scanobjectnn_obj_bg", "scanobjectnn_obj_only", "scanobjectnn_pb_t50_rs")
GAP_POINTS = 5.0


def interval(values: list[float]) -> tuple[float, float, float, int]:
    """(mean, low, high, n): the 95% Student-t interval of the mean of ``values`` (n >= 2)."""
    array = np.asarray(values, dtype=float)
    n = len(array)
    mean = float(array.mean())
    if n < 2:
        return mean, math.nan, math.nan, n
    half = float(stats.t.ppf(0.975, n - 1) * array.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half, n


def summarise(long: pd.DataFrame, suite: str) -> pd.DataFrame:
    """One row per (protocol, benchmark, backbone, metric, source): mean, 95% interval and n over seeds."""
    rows = []
    frame = long[(long["suite"] == suite) & long["protocol"].isin(["svm", "fewshot"])]
    frame = frame.assign(source=np.where(frame["init"] == "random", "random", frame["variant"].fillna("")))
    for key, group in frame.groupby(["protocol", "benchmark", "backbone", "metric", "source"]):
        mean, low, high, n = interval(group["value"].tolist())
        rows.append(dict(zip(["protocol", "benchmark", "backbone", "metric", "source"], key, strict=True),
                         mean=mean, low=low, high=high, n=n))
    return pd.DataFrame(rows)


def gap_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """Each pre-trained row against random init on the same (protocol, benchmark, backbone, metric)."""
    keys = ["protocol", "benchmark", "backbone", "metric"]
    random = summary[summary["source"] == "random"].set_index(keys)
    rows = []
    for _, row in summary[summary["source"] != "random"].iterrows():
        key = tuple(row[k] for k in keys)
        if key not in random.index:
            continue
        base = random.loc[key]
        rows.append({**{k: row[k] for k in keys}, "variant": row["source"],
                     "pretrained": row["mean"], "pretrained_ci": (row["low"], row["high"]), "n": row["n"],
                     "random": base["mean"], "random_ci": (base["low"], base["high"]), "n_random": base["n"],
                     "gap": row["mean"] - base["mean"],
                     "separated": bool(row["low"] > base["high"])})
    return pd.DataFrame(rows)


def correspondence_rows(results: Path, suite: str) -> pd.DataFrame:
    """Per variant: mean and 95% interval over seeds of each predictor's view/batch top-1 and top-5."""
    paths = sorted((results / "correspondence" / suite).glob("*/seed*.json"))
    records = [json.loads(path.read_text()) for path in paths]
    rows = []
    by_variant: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        by_variant.setdefault((record["backbone"], record["variant"]), []).append(record)
    for (backbone, variant), group in sorted(by_variant.items()):
        for predictor in ("model", "object_mean", "mask_prior", "neighbour_cell", "chance"):
            for metric in ("view_top1", "view_top5", "batch_top1", "batch_top5"):
                values = [r["metrics"][predictor][metric] for r in group if r["metrics"][predictor][metric] is not None]
                if not values:
                    continue
                mean, low, high, n = interval(values)
                rows.append({"backbone": backbone, "variant": variant, "predictor": predictor, "metric": metric,
                             "mean": mean, "low": low, "high": high, "n": n})
    return pd.DataFrame(rows)


def _ci(low: float, high: float) -> str:
    return "n/a" if math.isnan(low) else f"[{low:.1f}, {high:.1f}]"


def load_records(results: Path, suite: str) -> pd.DataFrame:
    """Every per-seed svm/few-shot record of ``suite`` as one long frame (one row per record)."""
    root = results / "downstream" / suite
    paths = sorted(root.glob("svm/**/seed*.json")) + sorted(root.glob("fewshot/**/seed*.json"))
    if not paths:
        raise SystemExit(f"no svm/fewshot records under {root}: run the {suite} suite first")
    records = []
    for path in paths:
        loaded = json.loads(path.read_text())
        # svm writes one record per file, few-shot a list (one per shot count)
        records += loaded if isinstance(loaded, list) else [loaded]
    return pd.DataFrame.from_records([{k: v for k, v in r.items() if k != "details"} for r in records])


def report(results: Path, suite: str) -> str:
    """The goal check as Markdown."""
    long = load_records(results, suite)
    gaps = gap_rows(summarise(long, suite))
    lines = [f"## Pre-trained vs random init ({suite} suite; mean over seeds, 95% t-interval of the mean)", "",
             "| protocol | benchmark | metric | variant | Pic@Point | random init | gap | intervals apart |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for _, row in gaps.sort_values(["protocol", "benchmark", "metric", "variant"]).iterrows():
        lines.append(f"| {row['protocol']} | {row['benchmark']} | {row['metric']} | {row['variant']} | "
                     f"{row['pretrained']:.1f} {_ci(*row['pretrained_ci'])} (n={row['n']}) | "
                     f"{row['random']:.1f} {_ci(*row['random_ci'])} (n={row['n_random']}) | {row['gap']:+.1f} | "
                     f"{'yes' if row['separated'] else 'no'} |")
    corr = correspondence_rows(results, suite)
    lines += ["", "## Correspondence (held-out objects; mean over seeds, 95% t-interval)", "",
              "| variant | predictor | view top-1 | view top-5 | batch top-1 | batch top-5 |",
              "| --- | --- | --- | --- | --- | --- |"]
    if not corr.empty:
        for (variant, predictor), group in corr.groupby(["variant", "predictor"], sort=False):
            cells = []
            for metric in ("view_top1", "view_top5", "batch_top1", "batch_top5"):
                hit = group[group["metric"] == metric]
                cells.append("–" if hit.empty else
                             f"{hit['mean'].iloc[0]:.1f} {_ci(hit['low'].iloc[0], hit['high'].iloc[0])}")
            lines.append(f"| {variant} | {predictor} | " + " | ".join(cells) + " |")

    def passes(frame: pd.DataFrame) -> bool:
        return bool(((frame["gap"] >= GAP_POINTS) & frame["separated"]).any()) if not frame.empty else False

    full = gaps[gaps["variant"] == "full"]
    fewshot5 = full[(full["protocol"] == "fewshot") & (full["metric"] == "overall_accuracy_5shot")]
    scan = full[full["benchmark"].isin(SCAN_BENCHMARKS)]
    model = corr[(corr["predictor"] == "model") & (corr["metric"] == "view_top1")] if not corr.empty else corr
    top1 = {row["variant"]: row for _, row in model.iterrows()}
    corr_ok = "full" in top1 and "no_pose" in top1 and top1["full"]["mean"] > top1["no_pose"]["mean"]
    corr_apart = corr_ok and top1["full"]["low"] > top1["no_pose"]["high"]
    lines += ["", "## Goal (issue 12)", "",
              f"- 5-shot probe, `full` beats random init by >= {GAP_POINTS:g} points with separated intervals "
              f"on some benchmark: **{'yes' if passes(fewshot5) else 'no'}**",
              f"- a scan-like stand-in (svm or few-shot), same test: **{'yes' if passes(scan) else 'no'}**",
              f"- correspondence view top-1, `full` > `no_pose`: **{'yes' if corr_ok else 'no'}**"
              f" (intervals apart: {'yes' if corr_apart else 'no'})"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", default="results", type=Path)
    parser.add_argument("--suite", default="evidence")
    parser.add_argument("--markdown", type=Path, help="also write the report here")
    args = parser.parse_args()
    text = report(args.results, args.suite)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
