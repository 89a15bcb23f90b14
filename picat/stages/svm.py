"""The svm step (Tables 1 and 3): a linear SVM on a frozen backbone's features; writes one record.

The features come from a features file (:mod:`picat.stages.features`, what the workflow
passes: one extraction shared with the few-shot probe), or, without one, are extracted here
from a Pic@Point checkpoint, an imported outside checkpoint (``picat convert``) or a random
initialisation (the "random" baseline), as a user
calling ``picat svm --checkpoint ...`` by hand does. Both paths give the same record.
``picat.report`` collates the records.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from picat.downstream.records import make_record, write_record
from picat.downstream.svm import SvmSettings, fit_and_score
from picat.stages.features import FeatureSettings, frozen_features_for, imported_provenance


def run_svm(benchmark: str, dataset: dict[str, Any] | None, settings: dict[str, Any], output: Path, suite: str,
            seed: int, checkpoint: Path | None = None, random_spec: dict[str, Any] | None = None, device: str = "auto",
            log: TextIO = sys.stderr, amp: str = "fp32", n_jobs: int = 1,
            features: Path | None = None, imported: str | None = None) -> dict[str, Any]:
    """Linear SVM on the frozen backbone's features of ``dataset``; writes and returns the record.

    Args:
        dataset: the benchmark's reader spec (``picat.datasets.read_classification``); None with ``features``.
        settings: the ``downstream.svm`` block (SvmSettings fields).
        seed: the pre-training seed (checkpoint) or the random init's seed.
        amp: the feature extraction's precision ("fp32", "bf16", "auto"); recorded as ``precision``.
            With ``features`` the file's precision is recorded instead.
        n_jobs: processes for the C search (the job's threads).
        features: a features file of this benchmark, suite, seed, ``n_points`` and ``batch_size``
            (:func:`picat.stages.features.read_features`) in place of ``dataset`` and a backbone source.
        imported: the name under which ``checkpoint``, an outside one, is scored (init "imported";
            :func:`picat.stages.features.source_identity`).
    """
    svm = SvmSettings.of(settings)
    frozen = frozen_features_for("svm", benchmark, dataset, FeatureSettings(svm.n_points, svm.batch_size), suite,
                                 seed, checkpoint, random_spec, features, device, log, amp, imported)
    meta = frozen.metadata
    provenance = imported_provenance(meta)
    result = fit_and_score(frozen.train_x, frozen.train_y, frozen.test_x, frozen.test_y, svm, seed, n_jobs=n_jobs)
    print(f"[svm] {benchmark}: test accuracy {result['accuracy']:.2f}% with C={result['best_c']} "
          f"(chosen by {result['folds']}-fold CV on train: {result['cv_accuracy']:.2f}%)", file=log, flush=True)
    record = make_record(
        protocol="svm", benchmark=benchmark, backbone=meta["backbone"], variant=meta["variant"], init=meta["init"],
        seed=seed, value=result["accuracy"], suite=suite, image_backbone=meta["image_backbone"],
        trainable_pretrain_params=meta["trainable_pretrain_params"], checkpoint=meta["checkpoint"],
        details={**result, "settings": {**svm.__dict__, "c_grid": list(svm.c_grid)},
                 "precision": meta["precision"], "feature_dim": meta["feature_dim"],
                 "train_source": meta["train_source"], "test_source": meta["test_source"],
                 **({} if provenance is None else {"imported": provenance})},
    )
    write_record(record, output)
    return record
