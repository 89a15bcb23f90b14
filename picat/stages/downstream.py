"""The svm and finetune steps: read a benchmark's splits, take a backbone, write one record.

A record is one JSON file per (protocol, benchmark, backbone source, seed); ``picat.report``
collates them. The backbone source is a Pic@Point checkpoint or a random initialisation
(the baselines: "random" for the SVM, "scratch" for fine-tuning).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

import torch

from picat.datasets import read_classification
from picat.devices import pick_device
from picat.downstream.backbones import backbone_source, image_weights_label, trainable_pretrain_params
from picat.downstream.finetune import FinetuneSettings, finetune
from picat.downstream.records import make_record, write_record
from picat.downstream.svm import SvmSettings, extract_features, fit_and_score
from picat.models.pointnext import PointNeXtClassifier, PointNeXtEncoder


def run_svm(benchmark: str, dataset: dict[str, Any], settings: dict[str, Any], output: Path, suite: str, seed: int,
            checkpoint: Path | None = None, random_spec: dict[str, Any] | None = None, device: str = "auto",
            log: TextIO = sys.stderr) -> dict[str, Any]:
    """Linear SVM on the frozen backbone's features of ``dataset``; writes and returns the record.

    Args:
        dataset: the benchmark's reader spec (``picat.datasets.read_classification``).
        settings: the ``downstream.svm`` block (SvmSettings fields).
        seed: the pre-training seed (checkpoint) or the random init's seed.
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
    train_x = extract_features(backbone, train.points, svm.n_points, svm.batch_size, where, log, "train features")
    test_x = extract_features(backbone, test.points, svm.n_points, svm.batch_size, where, log, "test features")
    result = fit_and_score(train_x, train.labels, test_x, test.labels, svm, seed)
    print(f"[svm] {benchmark}: test accuracy {result['accuracy']:.2f}% with C={result['best_c']} "
          f"(chosen by {result['folds']}-fold CV on train: {result['cv_accuracy']:.2f}%)", file=log, flush=True)
    record = make_record(
        protocol="svm", benchmark=benchmark, backbone=backbone.picat_metadata["backbone"], variant=variant, init=init,
        seed=seed, value=result["accuracy"], suite=suite,
        image_backbone=None if metadata is None else image_weights_label(metadata),
        trainable_pretrain_params=trainable_pretrain_params(metadata), checkpoint=None if checkpoint is None else str(checkpoint),
        details={**result, "settings": {**svm.__dict__, "c_grid": list(svm.c_grid)}, "feature_dim": int(train_x.shape[1]),
                 "train_source": train.source, "test_source": test.source},
    )
    write_record(record, output)
    return record


def run_finetune(benchmark: str, dataset: dict[str, Any], settings: dict[str, Any], output: Path, suite: str, seed: int,
                 checkpoint: Path | None = None, random_spec: dict[str, Any] | None = None, device: str = "auto",
                 log: TextIO = sys.stderr) -> dict[str, Any]:
    """Fine-tune a PointNeXt-S classifier on ``dataset``; writes and returns the record."""
    finetune_settings = FinetuneSettings.of(settings)
    encoder, init, variant, metadata = backbone_source(checkpoint, random_spec, seed, baseline="scratch")
    if not isinstance(encoder, PointNeXtEncoder):
        raise ValueError(f"fine-tuning needs a PointNeXt encoder, got {encoder.picat_metadata['backbone']}")
    if encoder.config.use_normals:
        raise ValueError("fine-tuning on ScanObjectNN takes xyz only; this checkpoint was pre-trained with normals")
    train, test = read_classification(dataset, "train"), read_classification(dataset, "test")
    torch.manual_seed(seed)  # the head's initialisation
    model = PointNeXtClassifier(len(train.class_names), encoder=encoder)
    where = pick_device(device)
    print(f"[finetune] {benchmark}: {len(train.labels)} train / {len(test.labels)} test clouds, "
          f"{len(train.class_names)} classes; PointNeXt-S {init} (seed {seed}) on {where}", file=log, flush=True)
    result = finetune(model, train.points, train.labels, test.points, test.labels, finetune_settings, seed,
                      encoder.picat_metadata["up_axis"], where, log)
    record = make_record(
        protocol="finetune", benchmark=benchmark, backbone="pointnext", variant=variant, init=init, seed=seed,
        value=result["test"]["overall_accuracy"], suite=suite,
        image_backbone=None if metadata is None else image_weights_label(metadata),
        trainable_pretrain_params=trainable_pretrain_params(metadata), checkpoint=None if checkpoint is None else str(checkpoint),
        details={**result, "train_source": train.source, "test_source": test.source,
                 "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6},
    )
    write_record(record, output)
    return record
