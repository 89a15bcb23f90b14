"""The JSON record(s) of one downstream run, the unit that ``picat.report`` collates into tables.

A run with one number (linear SVM, classification fine-tuning) writes one record (a JSON
object, :func:`make_record` / :func:`write_record`); a run that measures several metrics at once
(part and scene segmentation) writes a JSON list of records, one per metric, that agree on
everything else (:func:`make_records` / :func:`write_records`).

Every record says which suite and which image-backbone weights made it, so that a demo-suite
figure can never pass for a paper reproduction.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from picat.report.results import validate_record, validate_records


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


def make_records(metrics: Mapping[str, float], *, protocol: str, benchmark: str, backbone: str,
                 variant: str | None, init: str, seed: int, suite: str, image_backbone: str | None,
                 trainable_pretrain_params: int | None, checkpoint: str | None,
                 details: dict[str, Any]) -> list[dict[str, Any]]:
    """One run's records, one per metric (``{"miou": 63.1, "macc": 70.2}``; values in percent).

    Every record carries the same run keys and the same ``details``. Checked by
    :func:`write_records` with the collation's own validation.

    Raises:
        ValueError: when ``metrics`` is empty.
    """
    if not metrics:
        raise ValueError("make_records needs at least one metric")
    return [make_record(protocol=protocol, benchmark=benchmark, backbone=backbone, variant=variant, init=init,
                        seed=seed, value=value, suite=suite, image_backbone=image_backbone,
                        trainable_pretrain_params=trainable_pretrain_params, checkpoint=checkpoint,
                        details=details, metric=metric)
            for metric, value in metrics.items()]


def _write_json(content: Any, path: Path) -> None:
    """Write ``content`` as JSON under a temporary name, then rename it onto ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_record(record: dict[str, Any], path: Path) -> None:
    """Check ``record`` as the collation will read it, then write it as JSON atomically (temp name, rename)."""
    path = Path(path)
    validate_record(path, record)
    _write_json(record, path)


def write_records(records: list[dict[str, Any]], path: Path) -> None:
    """Check one run's ``records`` as the collation will read them, then write them as a JSON list atomically.

    Raises:
        picat.report.results.ResultFileError: when a record is malformed, the records disagree
            on a run key, repeat a metric, or the list is empty (naming the file, index and key).
    """
    path = Path(path)
    if not isinstance(records, list):
        raise TypeError(f"write_records takes a list of records, got {type(records).__name__}")
    validate_records(path, records)
    _write_json(records, path)
