"""The finetune step (Table 2): fine-tune PointNeXt-S on a classification benchmark; writes one record.

The backbone source is a Pic@Point checkpoint or a random initialisation (the "scratch"
baseline); ``picat.report`` collates the records. The run folder beside the record
(``seed0.json`` -> ``seed0/``) holds the per-epoch resume state while the job runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

import torch

from picat.accelerator import precision_label
from picat.datasets import read_classification
from picat.devices import pick_device
from picat.downstream.backbones import backbone_source, image_weights_label, trainable_pretrain_params
from picat.downstream.finetune import FinetuneSettings, finetune
from picat.downstream.records import make_record, write_record
from picat.models.pointnext import PointNeXtClassifier, PointNeXtEncoder
from picat.resume import RESUME_FILE, run_folder_of


def run_finetune(benchmark: str, dataset: dict[str, Any], settings: dict[str, Any], output: Path, suite: str, seed: int,
                 checkpoint: Path | None = None, random_spec: dict[str, Any] | None = None, device: str = "auto",
                 log: TextIO = sys.stderr, amp: str = "fp32",
                 stop_after_epochs: int | None = None,
                 logging_settings: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Fine-tune a PointNeXt-S classifier on ``dataset``; writes and returns the record.

    ``amp`` ("fp32", "bf16", "auto"): the forward passes' precision, recorded as ``precision``.
    The run folder :func:`picat.resume.run_folder_of` ``(output)`` holds the per-epoch resume
    state (a rerun after a kill continues from it; removed once the record is written).
    ``stop_after_epochs``: end after that many epochs in total and return None without a
    record (a later call resumes).
    ``logging_settings``: the ``logging`` block (:class:`picat.training_log.LoggingSettings`;
    None: the CSV and TensorBoard): the run folder gets ``log.csv``, and ``tensorboard/`` and
    ``wandb/`` as the block says.
    """
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
    run_dir = run_folder_of(output)
    result = finetune(model, train.points, train.labels, test.points, test.labels, finetune_settings, seed,
                      encoder.picat_metadata["up_axis"], where, log, amp=amp, run_dir=run_dir,
                      stop_after_epochs=stop_after_epochs, logging_settings=logging_settings)
    if result is None:
        return None
    record = make_record(
        protocol="finetune", benchmark=benchmark, backbone="pointnext", variant=variant, init=init, seed=seed,
        value=result["test"]["overall_accuracy"], suite=suite,
        image_backbone=None if metadata is None else image_weights_label(metadata),
        trainable_pretrain_params=trainable_pretrain_params(metadata),
        checkpoint=None if checkpoint is None else str(checkpoint),
        details={**result, "precision": precision_label(amp, where), "train_source": train.source,
                 "test_source": test.source,
                 "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6},
    )
    write_record(record, output)
    # The record is written: the resume state (optimiser moments included) is no longer needed.
    (run_dir / RESUME_FILE).unlink(missing_ok=True)
    return record
