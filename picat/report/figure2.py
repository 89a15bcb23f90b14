"""Figure 2: trainable pre-training parameters vs ModelNet40 linear-SVM accuracy.

The paper's Figure 2 is an image: the parameter counts of the other methods are not in its
text, so none are invented here. The figure shows

* picat's measured DGCNN Pic@Point points (x = trainable pre-training parameters, from the
  result files; y = mean accuracy over seeds, error bar = sample std);
* the paper's Pic@Point accuracies (92.5, and 92.9 w/ normals) at the parameter count picat
  computes for the paper's configuration (passed in by the caller);
* the other DGCNN methods' Table 1 accuracies as dashed horizontal reference lines, since
  their parameter counts are not given in the paper's text.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: the workflow runs without a display

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from picat.atomic import atomic_path  # noqa: E402
from picat.report.paper_tables import load_paper_tables  # noqa: E402

PAPER_LABEL = "paper accuracy, parameters counted by picat"
REFERENCE_NOTE = "parameters not given in the paper's text"


def _measured_points(summary: pd.DataFrame) -> pd.DataFrame:
    """The DGCNN Pic@Point ModelNet40 linear-SVM rows of the summary, checked for plotting."""
    if "trainable_pretrain_params" not in summary.columns:
        raise ValueError("plot_figure2 needs the summary from picat.report.results.summarise "
                         "(a table without 'trainable_pretrain_params' cannot place points on the x axis)")
    points = summary[(summary["protocol"] == "svm") & (summary["benchmark"] == "modelnet40")
                     & (summary["backbone"] == "dgcnn") & (summary["init"] == "pic@point")]
    if points.empty:
        raise ValueError("no ModelNet40 linear-SVM result for a Pic@Point-pre-trained DGCNN: "
                         "Figure 2 has nothing to plot")
    missing = points[points["trainable_pretrain_params"].isna()]
    if not missing.empty:
        raise ValueError(f"ModelNet40 SVM results for variant(s) {', '.join(missing['variant'])} carry no "
                         "trainable_pretrain_params, so they cannot be placed on Figure 2's x axis")
    return points


def _suite_of(points: pd.DataFrame) -> str:
    suites = sorted(set(points["suite"]))
    if len(suites) != 1:
        raise ValueError(f"Figure 2 cannot mix suites ({', '.join(suites)})")
    return suites[0]


def _plot_measured(axes: plt.Axes, points: pd.DataFrame) -> None:
    for row in points.itertuples(index=False):
        std = row.std if not math.isnan(row.std) else None  # n=1: no spread to draw
        weights = row.image_backbone or "no image weights recorded"
        axes.errorbar([int(row.trainable_pretrain_params)], [row.mean], yerr=std, fmt="o", capsize=4,
                      label=f"picat {row.variant} (n={row.n_runs}; {row.suite} suite, {weights})")


def _plot_paper_points(axes: plt.Axes, paper_config_params: int | None) -> None:
    """The paper's Pic@Point accuracies; as lines when picat could not count the parameters."""
    table1 = load_paper_tables().query("table == 'table1' and benchmark == 'modelnet40' and init == 'pic@point'")
    for row in table1.itertuples(index=False):
        name = "Pic@Point w/ normals" if row.variant == "normals" else "Pic@Point"
        if paper_config_params is None:
            axes.axhline(row.paper_value, color="black", linestyle=":", linewidth=1,
                         label=f"paper {name}: {row.paper_value} (parameter count not available)")
        else:
            axes.plot([paper_config_params], [row.paper_value], marker="*", markersize=12, linestyle="none",
                      label=f"paper {name}: {row.paper_value} ({PAPER_LABEL})")


def _spread(values: list[float], gap: float) -> list[float]:
    """Label positions at least ``gap`` apart, centred on the sorted ``values``."""
    positions: list[float] = []
    for value in values:
        positions.append(max(value, positions[-1] + gap) if positions else value)
    shift = (sum(values) - sum(positions)) / len(values) if values else 0.0
    return [position + shift for position in positions]


def _plot_references(axes: plt.Axes) -> None:
    """Table 1's other DGCNN methods as labelled dashed lines, labels nudged apart."""
    paper = load_paper_tables()
    others = paper[(paper["table"] == "table1") & (paper["benchmark"] == "modelnet40")
                   & (paper["backbone"] == "dgcnn") & (paper["init"] != "pic@point")].sort_values("paper_value")
    low, high = axes.get_ylim()
    # Minimum label spacing, so that 90.6/90.7/90.9 stay legible.
    positions = _spread(others["paper_value"].tolist(), (high - low) * 0.03)
    for row, y in zip(others.itertuples(index=False), positions, strict=True):
        axes.axhline(row.paper_value, color="grey", linestyle="--", linewidth=0.8)
        name = row.method.split(" (")[0]
        axes.annotate(f"{name} {row.paper_value}", xy=(1.0, row.paper_value), xytext=(1.02, y),
                      xycoords=axes.get_yaxis_transform(), textcoords=axes.get_yaxis_transform(),
                      va="center", fontsize=7, color="dimgrey",
                      arrowprops={"arrowstyle": "-", "color": "lightgrey", "linewidth": 0.6})


def _limits(axes: plt.Axes, points: pd.DataFrame, paper_config_params: int | None) -> None:
    """Axis ranges covering measured points, paper points and the reference accuracies."""
    xs = [int(value) for value in points["trainable_pretrain_params"]]
    if paper_config_params is not None:
        xs.append(paper_config_params)
    axes.set_xscale("log")
    axes.set_xlim(min(xs) / 3, max(xs) * 3)
    paper = load_paper_tables().query("table == 'table1' and benchmark == 'modelnet40'")
    ys = [*points["mean"], *paper[paper["backbone"] == "dgcnn"]["paper_value"]]
    spread = points["std"].fillna(0.0)
    axes.set_ylim(min(min(ys), (points["mean"] - spread).min()) - 1.0,
                  max(max(ys), (points["mean"] + spread).max()) + 1.0)


def plot_figure2(summary: pd.DataFrame, out_png: Path, paper_config_params: int | None) -> None:
    """Plot Figure 2 to ``out_png`` (written atomically).

    Args:
        summary: the output of :func:`picat.report.results.summarise` (the long table has no
            parameter counts, so it cannot place points).
        out_png: the PNG to write.
        paper_config_params: the trainable pre-training parameters picat counts for the paper's
            configuration; the paper's accuracies are plotted there. ``None``: they are drawn as
            horizontal lines instead.

    Raises:
        ValueError: when there is no ModelNet40 linear-SVM result for a Pic@Point DGCNN, when
            such a result lacks ``trainable_pretrain_params``, or when suites are mixed.
    """
    points = _measured_points(summary)
    suite = _suite_of(points)
    figure, axes = plt.subplots(figsize=(8, 6.5), constrained_layout=True)
    try:
        _plot_measured(axes, points)
        _plot_paper_points(axes, paper_config_params)
        _limits(axes, points, paper_config_params)
        _plot_references(axes)
        axes.set_xlabel("trainable pre-training parameters (log scale)")
        axes.set_ylabel("ModelNet40 linear SVM overall accuracy (%)")
        note = f"{suite} suite" if suite == "paper" else f"{suite} suite: not a paper reproduction"
        figure.suptitle(f"Figure 2 (picat): pre-training parameters vs ModelNet40 SVM accuracy; {note}",
                        fontsize=10)
        axes.set_title(f"dashed lines: other DGCNN methods, Table 1 ({REFERENCE_NOTE})",
                       fontsize=8, color="dimgrey")
        # Below the axes, so that the legend never hides a measured point.
        figure.legend(fontsize=7, loc="outside lower center", ncols=1)
        with atomic_path(Path(out_png)) as temporary:
            figure.savefig(temporary, format="png", dpi=150)
    finally:
        plt.close(figure)
