"""The svm step (Tables 1 and 3): a linear SVM on a frozen backbone's features; writes one record.

The backbone source is a Pic@Point checkpoint or a random initialisation (the "random"
baseline); ``picat.report`` collates the records.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from picat.accelerator import precision_label
from picat.datasets import read_classification
from picat.devices import pick_device
from picat.downstream.backbones import backbone_source, image_weights_label, trainable_pretrain_params
from picat.downstream.records import make_record, write_record
from picat.downstream.svm import SvmSettings, extract_features, fit_and_score


def run_svm(benchmark: str, dataset: dict[str, Any], settings: dict[str, Any], output: Path, suite: str, seed: int,
            checkpoint: Path | None = None, random_spec: dict[str, Any] | None = None, device: str = "auto",
            log: TextIO = sys.stderr, amp: str = "fp32", n_jobs: int = 1) -> dict[str, Any]:
    """Linear SVM on the frozen backbone's features of ``dataset``; writes and returns the record.

    Args:
        dataset: the benchmark's reader spec (``picat.datasets.read_classification``).
        settings: the ``downstream.svm`` block (SvmSettings fields).
        seed: the pre-training seed (checkpoint) or the random init's seed.
        amp: the feature extraction's precision ("fp32", "bf16", "auto"); recorded as ``precision``.
        n_jobs: processes for the C search (the job's threads).
    """
    svm = SvmSettings.of(settings)
    backbone, init, variant, metadata = backbone_source(checkpoint, random_spec, seed, baseline="random")
    train, test = read_classification(dataset, "train"), read_classification(dataset, "test")
    if train.class_names != test.class_names:
        raise ValueError(f"{benchmark}: train and test splits name different classes")
    where = pick_device(device)
    print(f"[svm] {benchmark}: {len(train.labels)} train / {len(test.labels)} test clouds, {len(train.class_names)} "
          f"classes; backbone {backbone.picat_metadata['backbone']} ({init}"
          f"{'' if variant is None else ', ' + variant}, seed {seed}) on {where}", file=log, flush=True)
    train_x = extract_features(backbone, train.points, svm.n_points, svm.batch_size, where, log, "train features",
                               amp)
    test_x = extract_features(backbone, test.points, svm.n_points, svm.batch_size, where, log, "test features", amp)
    result = fit_and_score(train_x, train.labels, test_x, test.labels, svm, seed, n_jobs=n_jobs)
    print(f"[svm] {benchmark}: test accuracy {result['accuracy']:.2f}% with C={result['best_c']} "
          f"(chosen by {result['folds']}-fold CV on train: {result['cv_accuracy']:.2f}%)", file=log, flush=True)
    record = make_record(
        protocol="svm", benchmark=benchmark, backbone=backbone.picat_metadata["backbone"], variant=variant, init=init,
        seed=seed, value=result["accuracy"], suite=suite,
        image_backbone=None if metadata is None else image_weights_label(metadata),
        trainable_pretrain_params=trainable_pretrain_params(metadata),
        checkpoint=None if checkpoint is None else str(checkpoint),
        details={**result, "settings": {**svm.__dict__, "c_grid": list(svm.c_grid)},
                 "precision": precision_label(amp, where),
                 "feature_dim": int(train_x.shape[1]), "train_source": train.source, "test_source": test.source},
    )
    write_record(record, output)
    return record
