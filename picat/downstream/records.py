"""One JSON record per downstream run, the unit that ``picat.report`` collates into tables.

Every record says which suite and which image-backbone weights made it, so that a demo-suite
figure can never pass for a paper reproduction.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from picat.report.results import validate_record


def make_record(*, protocol: str, benchmark: str, backbone: str, variant: str | None, init: str, seed: int,
                value: float, suite: str, image_backbone: str | None, trainable_pretrain_params: int | None,
                checkpoint: str | None, details: dict[str, Any], metric: str = "overall_accuracy") -> dict[str, Any]:
    """A result record (the format ``picat.report.results.load_results`` reads); value in percent.

    Checked by :func:`write_record` with the collation's own validation.
    """
    return {"protocol": protocol, "benchmark": benchmark, "backbone": backbone, "variant": variant, "init": init,
            "seed": int(seed), "metric": metric, "value": float(value), "suite": suite,
            "image_backbone": image_backbone, "trainable_pretrain_params": trainable_pretrain_params,
            "checkpoint": checkpoint, "details": details}


def write_record(record: dict[str, Any], path: Path) -> None:
    """Check ``record`` as the collation will read it, then write it as JSON atomically (temp name, rename)."""
    path = Path(path)
    validate_record(path, record)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
