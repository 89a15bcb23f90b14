"""Figure 4's numbers as a table: how the exemplar centres' own image cells rank.

``picat figure4`` writes one JSON summary per backbone; this module collates them into
``results/tables/figure4.csv``, one row per summary, so that the figure's measurable claim
(the exemplar's own 7x7 cell ranks near the top of the 49 cells, chance being 25) sits with
the other tables and names the suite and image weights that made it. Where the summary quotes
the correspondence metric of its checkpoint (the workflow's do), the row also carries the
figure's claim as a number: the own cell's top-1/top-5 among the view's cells over every
visible centre of every held-out object-view, beside the object-mean and mask-prior
baselines and chance, with n (:mod:`picat.report.correspondence`); empty otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from picat.atomic import atomic_path

# The correspondence metric's headline numbers (keys of picat.report.correspondence.headline).
CORRESPONDENCE_COLUMNS = ("model_view_top1", "model_view_top5", "object_mean_view_top1", "object_mean_view_top5",
                          "mask_prior_view_top1", "mask_prior_view_top5", "chance_view_top1", "chance_view_top5",
                          "n_centres", "n_object_views")
COLUMNS = ("suite", "backbone", "variant", "seed", "image_backbone", "image_weights", "objects", "cells",
           "exemplar_mean_rank", "visible_mean_rank", "object_cell_mean_rank", "chance_rank",
           *CORRESPONDENCE_COLUMNS, "checkpoint")
_REQUIRED = ("suite", "backbone", "variant", "seed", "image_backbone", "objects", "cells", "mean_rank",
             "visible_mean_rank", "object_cell_mean_rank", "chance_rank", "checkpoint")


def figure4_rows(summary_paths: Sequence[Path]) -> pd.DataFrame:
    """One row per Figure 4 summary JSON (columns :data:`COLUMNS`), in the order given.

    Raises:
        ValueError: a summary is not valid JSON or lacks a key, naming the file and the key.
    """
    rows = []
    for path in map(Path, summary_paths):
        try:
            summary = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not a valid Figure 4 summary ({error})") from None
        missing = [key for key in _REQUIRED if key not in summary]
        if missing:
            raise ValueError(f"{path}: Figure 4 summary lacks key(s) {', '.join(missing)}")
        rows.append({
            "suite": summary["suite"], "backbone": summary["backbone"], "variant": summary["variant"],
            "seed": summary["seed"], "image_backbone": summary["image_backbone"].get("name"),
            "image_weights": summary["image_backbone"].get("weights"), "objects": len(summary["objects"]),
            "cells": summary["cells"], "exemplar_mean_rank": summary["mean_rank"],
            "visible_mean_rank": summary["visible_mean_rank"],
            "object_cell_mean_rank": summary["object_cell_mean_rank"], "chance_rank": summary["chance_rank"],
            **{column: summary.get("correspondence", {}).get(column) for column in CORRESPONDENCE_COLUMNS},
            "checkpoint": summary["checkpoint"],
        })
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_figure4_table(summary_paths: Sequence[Path], out_csv: Path) -> None:
    """Write :func:`figure4_rows` of ``summary_paths`` to ``out_csv`` atomically."""
    with atomic_path(out_csv) as temporary:
        figure4_rows(summary_paths).to_csv(temporary, index=False)
