"""The fewshot step (picat-only, not in the paper): the few-shot linear probe on a frozen
backbone's features; writes one JSON list of records, one per shot count.

The backbone source is a Pic@Point checkpoint or a random initialisation (the "random"
baseline, seeded like the svm protocol's). Features are extracted once; every shot count and
draw (:mod:`picat.downstream.fewshot`) is fitted on them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from picat.accelerator import precision_label
from picat.datasets import read_classification
from picat.devices import pick_device
from picat.downstream.backbones import backbone_source
from picat.downstream.fewshot import FewshotSettings, probe
from picat.downstream.records import fewshot_metric, write_run_records
from picat.downstream.svm import extract_features


def run_fewshot(benchmark: str, dataset: dict[str, Any], settings: dict[str, Any], output: Path, suite: str,
                seed: int, checkpoint: Path | None = None, random_spec: dict[str, Any] | None = None,
                device: str = "auto", log: TextIO = sys.stderr, amp: str = "fp32",
                n_jobs: int = 1) -> list[dict[str, Any]]:
    """The few-shot probe on the frozen backbone's features of ``dataset``; writes and returns the records.

    Args:
        dataset: the benchmark's reader spec (``picat.datasets.read_classification``).
        settings: the ``downstream.fewshot`` block without ``benchmarks`` (FewshotSettings fields).
        seed: the pre-training seed (checkpoint) or the random init's seed; also seeds the draws.
        amp: the feature extraction's precision; recorded as ``precision``.
        n_jobs: processes for the "all" row's C search (the job's threads).
    """
    fewshot = FewshotSettings.of(settings)
    started = time.time()
    backbone, init, variant, metadata = backbone_source(checkpoint, random_spec, seed, baseline="random")
    train, test = read_classification(dataset, "train"), read_classification(dataset, "test")
    if train.class_names != test.class_names:
        raise ValueError(f"{benchmark}: train and test splits name different classes")
    where = pick_device(device)
    print(f"[fewshot] {benchmark}: {len(train.labels)} train / {len(test.labels)} test clouds, "
          f"{len(train.class_names)} classes; backbone {backbone.picat_metadata['backbone']} ({init}"
          f"{'' if variant is None else ', ' + variant}, seed {seed}) on {where}; shots {list(fewshot.shots)}, "
          f"{fewshot.draws} draws each", file=log, flush=True)
    train_x = extract_features(backbone, train.points, fewshot.n_points, fewshot.batch_size, where, log,
                               "train features", amp)
    test_x = extract_features(backbone, test.points, fewshot.n_points, fewshot.batch_size, where, log,
                              "test features", amp)
    extracted = time.time()
    shots = probe(train_x, train.labels, test_x, test.labels, train.class_names, fewshot, seed, n_jobs, log)
    metrics = {fewshot_metric(row["shots"]): row["mean"] for row in shots.values()}
    details = {"shots": shots, "picat_only": "not in the paper",
               "settings": {**fewshot.__dict__, "shots": list(fewshot.shots), "c_grid": list(fewshot.c_grid)},
               "precision": precision_label(amp, where), "feature_dim": int(train_x.shape[1]),
               "n_train": int(len(train.labels)), "n_test": int(len(test.labels)),
               "train_source": train.source, "test_source": test.source,
               "seconds": {"features": extracted - started, "fits": time.time() - extracted}}
    return write_run_records("fewshot", benchmark, backbone.picat_metadata["backbone"], metrics, details, output,
                             suite, seed, init, variant, metadata, checkpoint)
