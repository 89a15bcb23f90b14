"""The fewshot step (picat-only, not in the paper): the few-shot linear probe on a frozen
backbone's features; writes one JSON list of records, one per shot count.

The backbone source is a Pic@Point checkpoint, an imported outside checkpoint (``picat
convert``) or a random initialisation (the "random" baseline, seeded like the svm protocol's).
Its features come from a features file (:mod:`picat.stages.features`: the workflow extracts
them once for this probe and the svm protocol) or, without one, are extracted here; every
shot count and draw (:mod:`picat.downstream.fewshot`) is fitted on them.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from picat.downstream.fewshot import FewshotSettings, probe
from picat.downstream.records import fewshot_metric, json_safe, make_records, write_records
from picat.stages.features import FeatureSettings, frozen_features_for, imported_provenance


def run_fewshot(benchmark: str, dataset: dict[str, Any] | None, settings: dict[str, Any], output: Path, suite: str,
                seed: int, checkpoint: Path | None = None, random_spec: dict[str, Any] | None = None,
                device: str = "auto", log: TextIO = sys.stderr, amp: str = "fp32",
                n_jobs: int = 1, features: Path | None = None, imported: str | None = None) -> list[dict[str, Any]]:
    """The few-shot probe on the frozen backbone's features of ``dataset``; writes and returns the records.

    Args:
        dataset: the benchmark's reader spec (``picat.datasets.read_classification``); None with ``features``.
        settings: the ``downstream.fewshot`` block without ``benchmarks`` (FewshotSettings fields).
        seed: the pre-training seed (checkpoint) or the random init's seed; also seeds the draws.
        amp: the feature extraction's precision; recorded as ``precision`` (with ``features``, the file's).
        n_jobs: processes for the "all" row's C search (the job's threads).
        features: a features file of this benchmark, suite, seed, ``n_points`` and ``batch_size``
            (:func:`picat.stages.features.read_features`) in place of ``dataset`` and a backbone source.
            ``details.seconds.features`` is then the extraction's time, from the file.
        imported: the name under which ``checkpoint``, an outside one, is scored (init "imported";
            :func:`picat.stages.features.source_identity`).
    """
    fewshot = FewshotSettings.of(settings)
    print(f"[fewshot] {benchmark}: shots {list(fewshot.shots)}, {fewshot.draws} draws each", file=log, flush=True)
    frozen = frozen_features_for("fewshot", benchmark, dataset, FeatureSettings(fewshot.n_points, fewshot.batch_size),
                                 suite, seed, checkpoint, random_spec, features, device, log, amp, imported)
    meta = frozen.metadata
    provenance = imported_provenance(meta)
    fitting = time.time()
    shots = probe(frozen.train_x, frozen.train_y, frozen.test_x, frozen.test_y, frozen.class_names, fewshot, seed,
                  n_jobs, log)
    metrics = {fewshot_metric(row["shots"]): row["mean"] for row in shots.values()}
    details = {"shots": shots, "picat_only": "not in the paper",
               "settings": {**fewshot.__dict__, "shots": list(fewshot.shots), "c_grid": list(fewshot.c_grid)},
               "precision": meta["precision"], "feature_dim": meta["feature_dim"],
               "n_train": meta["n_train"], "n_test": meta["n_test"],
               "train_source": meta["train_source"], "test_source": meta["test_source"],
               "seconds": {"features": meta["seconds"], "fits": time.time() - fitting},
               **({} if provenance is None else {"imported": provenance})}
    records = make_records(
        metrics, protocol="fewshot", benchmark=benchmark, backbone=meta["backbone"], variant=meta["variant"],
        init=meta["init"], seed=seed, suite=suite, image_backbone=meta["image_backbone"],
        trainable_pretrain_params=meta["trainable_pretrain_params"], checkpoint=meta["checkpoint"],
        details=json_safe(details))
    write_records(records, output)
    return records
