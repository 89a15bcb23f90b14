"""The figure4 step: local 2D-3D correspondence heatmaps of one checkpoint, and their summary JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from picat.atomic import write_text_atomically
from picat.report.figure4 import plot_figure4


def make_figure4(checkpoint: Path, shards: Sequence[Path], features: Sequence[Path] | None, out_png: Path,
                 summary_path: Path | None = None, n_objects: int = 3, seed: int = 0,
                 device: str = "cpu", correspondence: Path | None = None) -> dict[str, Any]:
    """Draw Figure 4 for ``checkpoint`` on ``n_objects`` objects of ``shards``; write the PNG and,
    when ``summary_path`` is given, the exemplar ranks as JSON (``picat tables`` collates them).

    Args:
        features: the shards' cached image features, or None to encode the views on the fly.
        correspondence: the checkpoint's correspondence result JSON (``picat correspondence``),
            whose headline (own-cell top-1/top-5 against the baselines) the summary and caption quote.
    """
    numbers = None
    if correspondence is not None:
        try:
            numbers = json.loads(Path(correspondence).read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{correspondence}: not a valid correspondence result ({error})") from None
    summary = plot_figure4(Path(checkpoint), [Path(path) for path in shards],
                           None if features is None else [Path(path) for path in features], Path(out_png),
                           n_objects=n_objects, seed=seed, device=device, correspondence=numbers)
    if summary_path is not None:
        write_text_atomically(summary_path, json.dumps(summary, indent=2, default=float) + "\n")
    return summary
