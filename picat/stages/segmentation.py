"""The segmentation steps (Tables 4-5): S3DIS conversion, part segmentation, scene segmentation.

Like the classification steps (``picat.stages.downstream``), each run starts from a Pic@Point
checkpoint or a random initialisation, trains on the benchmark's training split, scores the
last epoch on the test split (never selected on it) and writes one record file per run: a
JSON list with one record per metric (Table 4: instance and class mIoU; Table 5: mIoU, mAcc
and overall accuracy).
"""

from __future__ import annotations

import math
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Mapping, TextIO

import numpy as np
import torch

from picat.datasets import (
    S3DIS_CLASSES,
    DatasetError,
    PartSegmentationSet,
    convert_room,
    converted_rooms,
    raw_rooms,
    read_room,
    read_shapenetpart_h5,
    read_shapenetpart_txt,
    write_room,
)
from picat.devices import pick_device
from picat.downstream.backbones import backbone_source, image_weights_label, trainable_pretrain_params
from picat.downstream.partseg import PartSegSettings, run_part_segmentation
from picat.downstream.records import make_records, write_records
from picat.downstream.semseg import SemSegSettings, run_scene_segmentation
from picat.models.dgcnn import DGCNN
from picat.models.pointnext import PointNeXtEncoder
from picat.models.segmentation import DGCNNPartSegmenter, PointNeXtSegmenter, segmentation_encoder, with_k

PART_FORMATS = ("shapenetpart_txt", "shapenetpart_h5")


def _concatenate(sets: list[PartSegmentationSet]) -> PartSegmentationSet:
    """One set holding the shapes of ``sets`` (same category order required)."""
    names = sets[0].category_names
    for other in sets[1:]:
        if other.category_names != names:
            raise DatasetError(f"splits list different categories: {names} vs {other.category_names}")
    return PartSegmentationSet(
        [p for s in sets for p in s.points], [p for s in sets for p in s.parts],
        np.concatenate([s.categories for s in sets]), names, [i for s in sets for i in s.shape_ids])


def read_part_segmentation(spec: Mapping[str, Any], split: str) -> PartSegmentationSet:
    """ShapeNetPart's ``split`` from a reader spec ``{format, root, normals?}``.

    ``split`` "trainval" is train + val: the benchmark's usual training set (the paper's
    peers train on both and test on test).
    """
    fmt = spec.get("format")
    if fmt not in PART_FORMATS:
        raise DatasetError(f"dataset spec 'format' must be one of {PART_FORMATS} for part segmentation, got {fmt!r}")
    root = Path(spec["root"])

    def read(one: str) -> PartSegmentationSet:
        if fmt == "shapenetpart_txt":
            return read_shapenetpart_txt(root, one, normals=bool(spec.get("normals", False)))
        return read_shapenetpart_h5(root, one)

    if split == "trainval":
        return _concatenate([s for s in (read("train"), read("val")) if len(s)])
    return read(split)


def convert_s3dis(raw_root: Path, out_dir: Path, log: TextIO = sys.stderr) -> dict[str, Any]:
    """Convert every raw room under ``raw_root`` into ``out_dir/Area_<k>_<room>.npy``.

    The folder is built under a temporary name and renamed at the end, so an interrupted
    conversion never leaves a half-converted dataset behind.
    """
    rooms = raw_rooms(Path(raw_root))
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    started, points, remapped = time.perf_counter(), 0, 0
    for index, room_dir in enumerate(rooms, start=1):
        array, n_remapped = convert_room(room_dir)
        write_room(array, tmp / f"{room_dir.parent.name}_{room_dir.name}.npy")
        points, remapped = points + len(array), remapped + n_remapped
        print(f"[s3dis] {index}/{len(rooms)} {room_dir.parent.name}/{room_dir.name}: {len(array)} points"
              + (f", {n_remapped} annotation file(s) of other classes counted as clutter" if n_remapped else ""),
              file=log, flush=True)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    summary = {"rooms": len(rooms), "points": points, "remapped_files": remapped,
               "seconds": round(time.perf_counter() - started, 1)}
    print(f"[s3dis] converted {summary}", file=log, flush=True)
    return summary


def _write(protocol: str, benchmark: str, backbone: str, metrics: dict[str, float], details: dict[str, Any],
           output: Path, suite: str, seed: int, init: str, variant: str | None, metadata: dict | None,
           checkpoint: Path | None) -> list[dict[str, Any]]:
    records = make_records(
        metrics, protocol=protocol, benchmark=benchmark, backbone=backbone, variant=variant, init=init, seed=seed,
        suite=suite, image_backbone=None if metadata is None else image_weights_label(metadata),
        trainable_pretrain_params=trainable_pretrain_params(metadata),
        checkpoint=None if checkpoint is None else str(checkpoint), details=_json_safe(details))
    write_records(records, output)
    return records


def run_partseg(dataset: dict[str, Any], settings: dict[str, Any], output: Path, suite: str, seed: int,
                checkpoint: Path | None = None, random_spec: dict[str, Any] | None = None, device: str = "auto",
                log: TextIO = sys.stderr) -> list[dict[str, Any]]:
    """DGCNN part segmentation on ShapeNetPart (Table 4); writes and returns the records."""
    settings = dict(settings)
    k = settings.pop("k", None)  # DGCNN's neighbour count for this protocol (not a weight)
    part = PartSegSettings.of(settings)
    backbone, init, variant, metadata = backbone_source(checkpoint, random_spec, seed, baseline="scratch")
    if not isinstance(backbone, DGCNN):
        raise ValueError(f"part segmentation (Table 4) uses DGCNN, got a {backbone.picat_metadata['backbone']} backbone")
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
    result = run_part_segmentation(model, train, test, part, seed, where, log)
    scores = result["test"]
    print(f"[partseg] test instance mIoU {scores['instance_miou']:.2f}%, class mIoU {scores['class_miou']:.2f}%",
          file=log, flush=True)
    details = {**result, "train_source": str(dataset["root"]), "n_train": len(train), "n_test": len(test),
               "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6}
    return _write("partseg", "shapenetpart", "dgcnn",
                  {"instance_miou": scores["instance_miou"], "class_miou": scores["class_miou"]}, details, output,
                  suite, seed, init, variant, metadata, checkpoint)


def run_semseg(rooms_dir: Path, settings: dict[str, Any], output: Path, suite: str, seed: int,
               checkpoint: Path | None = None, random_spec: dict[str, Any] | None = None, device: str = "auto",
               log: TextIO = sys.stderr) -> list[dict[str, Any]]:
    """PointNeXt-S scene segmentation on S3DIS, ``test_area`` held out (Table 5); writes and returns the records."""
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
    encoder, transfer = segmentation_encoder(source, seed=seed, **_encoder_options(encoder_options))
    if init == "scratch":
        transfer["source"] = f"random initialisation (seed {seed}) of the pre-training architecture: no pre-trained weights"
    torch.manual_seed(seed)  # the decoder's and head's initialisation
    model = PointNeXtSegmenter(encoder, len(S3DIS_CLASSES))
    where = pick_device(device)
    print(f"[semseg] s3dis: {len(train_rooms)} train rooms (areas {train_areas}) / {len(test_rooms)} test rooms "
          f"(area {scene.test_area}); PointNeXt-S {init}{'' if variant is None else ', ' + variant} (seed {seed}) "
          f"on {where}; weights transferred: {transfer['counts']}", file=log, flush=True)
    result = run_scene_segmentation(model, train_rooms, test_rooms, scene, seed, where, log)
    scores = result["test"]
    print(f"[semseg] test mIoU {scores['miou']:.2f}%, mAcc {scores['macc']:.2f}%, OA {scores['overall_accuracy']:.2f}%",
          file=log, flush=True)
    details = {**result, "transfer": transfer, "rooms_dir": str(rooms_dir), "train_areas": train_areas,
               "test_area": scene.test_area, "parameters_m": sum(p.numel() for p in model.parameters()) / 1e6}
    return _write("semseg", "s3dis", "pointnext",
                  {"miou": scores["miou"], "macc": scores["macc"], "overall_accuracy": scores["overall_accuracy"]},
                  details, output, suite, seed, init, variant, metadata, checkpoint)


def _encoder_options(options: dict[str, Any]) -> dict[str, Any]:
    unknown = set(options) - {"radius", "strides", "radius_scaling"}
    if unknown:
        raise ValueError(f"downstream.semseg.encoder: unknown key(s) {sorted(unknown)} (known: radius, strides, "
                         "radius_scaling)")
    return {key: tuple(value) if key == "strides" else value for key, value in options.items()}


def _json_safe(value: Any) -> Any:
    """``value`` with NaN/inf floats as None (strict JSON has no NaN; a class absent from a test set has no IoU)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    if isinstance(value, np.generic):
        return _json_safe(value.item())
    if isinstance(value, np.ndarray):
        return _json_safe(value.tolist())
    return value
