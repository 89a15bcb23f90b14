"""The semseg step (Table 5): PointNeXt-S scene segmentation on S3DIS; writes one record per metric.

The run starts from a Pic@Point checkpoint or a random initialisation, trains on every area
but the held-out one, scores the last epoch on whole test rooms (never selected on them) and
writes a JSON list of records: mIoU, mAcc and overall accuracy.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

import torch

from picat.accelerator import precision_label
from picat.datasets import S3DIS_CLASSES, DatasetError, converted_rooms, read_room
from picat.devices import pick_device
from picat.downstream.backbones import backbone_source
from picat.downstream.records import write_run_records
from picat.downstream.semseg import SemSegSettings, run_scene_segmentation
from picat.models.pointnext import PointNeXtEncoder
from picat.models.segmentation import PointNeXtSegmenter, segmentation_encoder
from picat.resume import RESUME_FILE, run_folder_of


def run_semseg(rooms_dir: Path, settings: dict[str, Any], output: Path, suite: str, seed: int,
               checkpoint: Path | None = None, random_spec: dict[str, Any] | None = None, device: str = "auto",
               log: TextIO = sys.stderr, amp: str = "fp32",
               stop_after_epochs: int | None = None,
               logging_settings: dict[str, Any] | None = None) -> list[dict[str, Any]] | None:
    """PointNeXt-S scene segmentation on S3DIS, ``test_area`` held out (Table 5); writes and returns the records.

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
    encoder_options = settings.pop("encoder", {})  # the segmentation encoder's set abstraction
    scene = SemSegSettings.of(settings)
    source, init, variant, metadata = backbone_source(checkpoint, random_spec, seed, baseline="scratch")
    if not isinstance(source, PointNeXtEncoder):
        raise ValueError(f"scene segmentation (Table 5) uses PointNeXt-S, got a {source.picat_metadata['backbone']} "
                         "backbone")
    rooms = [read_room(path) for path in converted_rooms(Path(rooms_dir))]
    areas = sorted({room.area for room in rooms})
    if scene.test_area not in areas:
        raise DatasetError(f"{rooms_dir}: no room of the held-out test area {scene.test_area} (areas present: {areas})")
    train_areas = [area for area in areas if area != scene.test_area]
    if not train_areas:
        raise DatasetError(f"{rooms_dir}: only the test area {scene.test_area} is present; nothing to train on")
    train_rooms = [room for room in rooms if room.area != scene.test_area]
    test_rooms = [room for room in rooms if room.area == scene.test_area]
    # A scratch run starts from the random encoder of the architecture pre-training trains
    # (random_spec's options), so both inits build the very same segmentation network.
    encoder, transfer = segmentation_encoder(source, seed=seed, **encoder_options_of(encoder_options))
    if init == "scratch":
        transfer["source"] = (f"random initialisation (seed {seed}) of the pre-training architecture: "
                              "no pre-trained weights")
    torch.manual_seed(seed)  # the decoder's and head's initialisation
    model = PointNeXtSegmenter(encoder, len(S3DIS_CLASSES))
    where = pick_device(device)
    print(f"[semseg] s3dis: {len(train_rooms)} train rooms (areas {train_areas}) / {len(test_rooms)} test rooms "
          f"(area {scene.test_area}); PointNeXt-S {init}{'' if variant is None else ', ' + variant} (seed {seed}) "
          f"on {where}; weights transferred: {transfer['counts']}", file=log, flush=True)
    run_dir = run_folder_of(output)
    result = run_scene_segmentation(model, train_rooms, test_rooms, scene, seed, where, log, amp, run_dir=run_dir,
                                    stop_after_epochs=stop_after_epochs, logging_settings=logging_settings)
    if result is None:
        return None
    scores = result["test"]
    print(f"[semseg] test mIoU {scores['miou']:.2f}%, mAcc {scores['macc']:.2f}%, OA {scores['overall_accuracy']:.2f}%",
          file=log, flush=True)
    details = {**result, "precision": precision_label(amp, where), "transfer": transfer,
               "rooms_dir": str(rooms_dir), "train_areas": train_areas,
               "test_area": scene.test_area, "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6}
    records = write_run_records("semseg", "s3dis", "pointnext",
                                {"miou": scores["miou"], "macc": scores["macc"],
                                 "overall_accuracy": scores["overall_accuracy"]},
                                details, output, suite, seed, init, variant, metadata, checkpoint)
    # The records are written: the resume state (optimiser moments included) is no longer needed.
    (run_dir / RESUME_FILE).unlink(missing_ok=True)
    return records


def encoder_options_of(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - {"radius", "strides", "radius_scaling"}
    if unknown:
        raise ValueError(f"downstream.semseg.encoder: unknown key(s) {sorted(unknown)} (known: radius, strides, "
                         "radius_scaling)")
    return {key: tuple(value) if key == "strides" else value for key, value in options.items()}
