"""The correspondence step: one checkpoint's own-cell retrieval on the held-out shards, as JSON."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from picat.atomic import write_json_atomically
from picat.downstream.records import json_safe
from picat.report.correspondence import evaluate_correspondence


def run_correspondence(checkpoint: Path, shards: Sequence[Path], features: Sequence[Path], out: Path,
                       batch_size: int, seed: int = 0, device: str = "cpu",
                       log: TextIO = sys.stderr) -> dict[str, Any]:
    """Measure :func:`picat.report.correspondence.evaluate_correspondence` and write it to ``out`` atomically."""
    result = json_safe(evaluate_correspondence(checkpoint, shards, features, batch_size, seed=seed, device=device,
                                               log=log))
    write_json_atomically(Path(out), result)
    model = result["metrics"]["model"]
    print(f"[correspondence] {checkpoint}: own cell top-1 {model['view_top1']:.1f}% / top-5 {model['view_top5']:.1f}% "
          f"of {result['cells']} cells, batch of {result['batch_size']} top-1 {model['batch_top1']:.1f}%; "
          f"{result['n_centres']} centres, {result['n_object_views']} object-views -> {out}", file=log, flush=True)
    return result
