"""The collation step: every downstream record -> results/tables.csv, tables/table*.csv, Figure 2; Figure 4's
summaries -> tables/figure4.csv."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import torch

from picat.models.factory import build_point_backbone
from picat.models.image import ImageBackboneSpec, build_image_backbone
from picat.pretrain.model import PicAtPoint
from picat.report.correspondence_table import write_correspondence_tables
from picat.report.fewshot_table import fewshot_long_rows, write_fewshot_table
from picat.report.figure2 import plot_figure2
from picat.report.figure4_table import write_figure4_table
from picat.report.paper_tables import write_summary_tables
from picat.report.results import load_results, summarise


def paper_configuration_parameters(paper_suite: dict[str, Any]) -> int:
    """Trainable parameters of Pic@Point's full DGCNN model as the paper suite configures it.

    Built with random weights: the count does not depend on them, and the ImageNet weights
    need not be present. The frozen 2D backbone is not counted (it is not trained).
    """
    pretrain = paper_suite["pretrain"]
    torch.manual_seed(0)
    backbone = build_point_backbone("dgcnn", pretrain["dgcnn"], normals=False)
    image = build_image_backbone(ImageBackboneSpec(name=paper_suite["image_backbone"]["name"], weights="none"))
    model = PicAtPoint(backbone, image.local_dim, "full", pretrain["latent_dim"], pretrain["pose_dim"])
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def collate(result_paths: Sequence[Path], out_long: Path, tables_dir: Path, figure2: Path, paper_suite: dict[str, Any],
            figure4_summaries: Sequence[Path] = (), log: TextIO = sys.stderr,
            correspondence_results: Sequence[Path] = ()) -> None:
    """Write the long table, the paper-shaped tables and Figure 2 from ``result_paths``,
    ``figure4.csv`` (the exemplar ranks) from ``figure4_summaries`` when there are any, and
    ``correspondence.csv`` plus its long-table rows from ``correspondence_results`` (picat-only)."""
    if not result_paths:
        raise ValueError("no result files to collate")
    summary = summarise(load_results(result_paths))
    fewshot = fewshot_long_rows(summary)  # picat-only: appended to the long table, shaped in fewshot.csv
    write_summary_tables(summary, out_long, tables_dir, extra_long=fewshot)
    write_fewshot_table(fewshot, Path(tables_dir) / "fewshot.csv")
    parameters = paper_configuration_parameters(paper_suite)
    plot_figure2(summary, figure2, parameters)
    if figure4_summaries:
        write_figure4_table(figure4_summaries, Path(tables_dir) / "figure4.csv")
    if correspondence_results:
        write_correspondence_tables(correspondence_results, Path(tables_dir) / "correspondence.csv", Path(out_long))
    else:  # never leave an earlier run's table beside this run's
        (Path(tables_dir) / "correspondence.csv").unlink(missing_ok=True)
    print(f"[tables] {len(result_paths)} result records -> {out_long}, {tables_dir}/, {figure2} "
          f"(paper configuration: {parameters / 1e6:.2f} M trainable pre-training parameters)", file=log, flush=True)
