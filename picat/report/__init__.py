"""Collating downstream results into the paper's tables and Figures 2 and 4.

* :mod:`picat.report.results` — reading result files, averaging over seeds;
* :mod:`picat.report.paper_tables` — the paper's numbers (``paper_tables.csv``), the long table
  ``results/tables.csv`` and the paper-shaped ``results/tables/table{1..5}.csv``;
* :mod:`picat.report.figure2` — trainable pre-training parameters vs ModelNet40 SVM accuracy;
* :mod:`picat.report.figure4` — local 2D-3D correspondence heatmaps of a checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_output(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``.

    Writing under a temporary name and ``os.replace``-ing it means a crashed or interrupted
    rule never leaves a half-written table or figure that Snakemake would take as done. The
    temporary name keeps the suffix, so writers that infer the format from it still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
