"""The partseg step (Table 4): DGCNN part segmentation on ShapeNetPart; writes one record per metric.

The run starts from a Pic@Point checkpoint or a random initialisation, trains on train + val,
scores the last epoch on test (never selected on it) and writes a JSON list of records:
instance and class mIoU.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

import torch

from picat.accelerator import precision_label
from picat.datasets import read_part_segmentation
from picat.devices import pick_device
from picat.downstream.backbones import backbone_source
from picat.downstream.partseg import PartSegSettings, run_part_segmentation
from picat.downstream.records import write_run_records
from picat.models.dgcnn import DGCNN
from picat.models.segmentation import DGCNNPartSegmenter, with_k
from picat.resume import RESUME_FILE, run_folder_of


def run_partseg(dataset: dict[str, Any], settings: dict[str, Any], output: Path, suite: str, seed: int,
                checkpoint: Path | None = None, random_spec: dict[str, Any] | None = None, device: str = "auto",
                log: TextIO = sys.stderr, amp: str = "fp32",
                stop_after_epochs: int | None = None,
                logging_settings: dict[str, Any] | None = None) -> list[dict[str, Any]] | None:
    """DGCNN part segmentation on ShapeNetPart (Table 4); writes and returns the records.

    ``amp`` ("fp32", "bf16", "auto"): the forward passes' precision, recorded as ``precision``.
    The run folder :func:`picat.resume.run_folder_of` ``(output)`` holds the per-epoch resume
    state (a rerun after a kill continues from it; removed once the records are written).
    ``stop_after_epochs``: end after that many epochs in total and return None without
    records (a later call resumes).
    ``logging_settings``: the ``logging`` block (:class:`picat.training_log.LoggingSettings`;
    None: the CSV and TensorBoard): the run folder gets ``log.csv``, and ``tensorboard/`` and
    ``wandb/`` as the block says.
    """
    settings = dict(settings)
    k = settings.pop("k", None)  # DGCNN's neighbour count for this protocol (not a weight)
    part = PartSegSettings.of(settings)
    backbone, init, variant, metadata = backbone_source(checkpoint, random_spec, seed, baseline="scratch")
    if not isinstance(backbone, DGCNN):
        raise ValueError(f"part segmentation (Table 4) uses DGCNN, "
                         f"got a {backbone.picat_metadata['backbone']} backbone")
    normals = backbone.config.in_channels == 6
    if normals != bool(dataset.get("normals", False)):
        raise ValueError(f"the backbone takes {'xyz + normals' if normals else 'xyz'} but the dataset spec has "
                         f"normals={bool(dataset.get('normals', False))}")
    train, test = read_part_segmentation(dataset, "trainval"), read_part_segmentation(dataset, "test")
    torch.manual_seed(seed)  # the head's initialisation
    model = DGCNNPartSegmenter(backbone if k is None else with_k(backbone, int(k)))
    where = pick_device(device)
    print(f"[partseg] shapenetpart: {len(train)} train+val / {len(test)} test shapes, {len(test.category_names)} "
          f"categories; DGCNN {init}{'' if variant is None else ', ' + variant} (seed {seed}) on {where}",
          file=log, flush=True)
    run_dir = run_folder_of(output)
    result = run_part_segmentation(model, train, test, part, seed, where, log, amp, run_dir=run_dir,
                                   stop_after_epochs=stop_after_epochs, logging_settings=logging_settings)
    if result is None:
        return None
    scores = result["test"]
    print(f"[partseg] test instance mIoU {scores['instance_miou']:.2f}%, class mIoU {scores['class_miou']:.2f}%",
          file=log, flush=True)
    details = {**result, "precision": precision_label(amp, where), "train_source": str(dataset["root"]),
               "n_train": len(train), "n_test": len(test),
               "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6}
    records = write_run_records("partseg", "shapenetpart", "dgcnn",
                                {"instance_miou": scores["instance_miou"], "class_miou": scores["class_miou"]},
                                details, output, suite, seed, init, variant, metadata, checkpoint)
    # The records are written: the resume state (optimiser moments included) is no longer needed.
    (run_dir / RESUME_FILE).unlink(missing_ok=True)
    return records
