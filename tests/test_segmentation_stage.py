"""The segmentation steps end to end on tiny stand-ins: conversion, part and scene segmentation records."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from picat.config import ConfigError, validate_config
from picat.datasets import DatasetError, converted_rooms, read_part_segmentation, read_room
from picat.demo.parts import SHAPENETPART_LAYOUT
from picat.demo.rooms import S3DIS_LAYOUT
from picat.report.results import load_results
from picat.stages.partseg import run_partseg
from picat.stages.s3dis_convert import convert_s3dis
from picat.stages.seg_standins import build_seg_standins
from picat.stages.semseg import run_semseg

REPO = Path(__file__).resolve().parent.parent
TINY_DGCNN = {"backbone": "dgcnn", "options": {"k": 4, "emb_dims": 16, "local_centres": 8}, "up_axis": "y"}
TINY_POINTNEXT = {"backbone": "pointnext", "options": {"width": 8, "nsample": 8}, "up_axis": "y"}


@pytest.fixture(scope="module")
def standins(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("seg") / "standins"
    build_seg_standins(out, {"seed": 0, "part": {"train_per_category": 2, "test_per_category": 1, "n_points": 64,
                                                 "categories": ["chair", "mug"]},
                             "rooms": {"areas": [1, 5], "rooms_per_area": 1, "points_per_m2": 10}}, log=io.StringIO())
    return out


@pytest.fixture(scope="module")
def rooms(standins: Path) -> Path:
    out = standins.parent / "rooms"
    convert_s3dis(standins / S3DIS_LAYOUT, out, log=io.StringIO())
    return out


def test_conversion_writes_one_array_per_raw_room_atomically(standins, rooms):
    paths = converted_rooms(rooms)
    assert [p.name.split("_")[1] for p in paths] == ["1", "5"]
    room = read_room(paths[0])
    assert len(room.points) > 0 and set(np.unique(room.labels)) >= {0, 1, 2}  # ceiling, floor, wall
    assert not list(rooms.parent.glob(".rooms.*"))  # no temporary folder left behind


def test_trainval_joins_train_and_val(standins):
    spec = {"format": "shapenetpart_txt", "root": str(standins / SHAPENETPART_LAYOUT)}
    assert len(read_part_segmentation(spec, "trainval")) == 4 and len(read_part_segmentation(spec, "test")) == 2
    with pytest.raises(DatasetError, match="format"):
        read_part_segmentation({**spec, "format": "modelnet40_h5"}, "test")


def test_partseg_scratch_writes_instance_and_class_miou(standins, tmp_path):
    spec = {"format": "shapenetpart_txt", "root": str(standins / SHAPENETPART_LAYOUT), "normals": False}
    settings = {"epochs": 1, "batch_size": 2, "n_points": 32, "k": 4, "lr": 0.01}
    out = tmp_path / "partseg.json"
    records = run_partseg(spec, settings, out, "demo", 0, random_spec=TINY_DGCNN, device="cpu", log=io.StringIO())
    assert [r["metric"] for r in records] == ["instance_miou", "class_miou"]
    assert all(r["init"] == "scratch" and r["protocol"] == "partseg" for r in records)
    frame = load_results([out])
    assert len(frame) == 2 and frame["value"].between(0, 100).all()
    assert json.loads(out.read_text())[0]["details"]["n_test"] == 2


def test_partseg_refuses_a_normals_mismatch(standins, tmp_path):
    spec = {"format": "shapenetpart_txt", "root": str(standins / SHAPENETPART_LAYOUT), "normals": True}
    with pytest.raises(ValueError, match="normals"):
        run_partseg(spec, {"epochs": 1}, tmp_path / "x.json", "demo", 0, random_spec=TINY_DGCNN, device="cpu",
                    log=io.StringIO())


def test_semseg_scratch_scores_every_point_of_the_held_out_area(rooms, tmp_path):
    settings = {"epochs": 1, "batch_size": 2, "voxel_size": 0.25, "max_points": 256, "crops_per_room": 2,
                "test_area": 5, "encoder": {"radius": 0.1, "strides": [1, 4, 4, 4, 4]}}
    out = tmp_path / "semseg.json"
    records = run_semseg(rooms, settings, out, "demo", 0, random_spec=TINY_POINTNEXT, device="cpu", log=io.StringIO())
    assert [r["metric"] for r in records] == ["miou", "macc", "overall_accuracy"]
    details = json.loads(out.read_text())[0]["details"]
    test_room = read_room(converted_rooms(rooms, [5])[0])
    assert details["test"]["n_points"] == len(test_room.points)
    assert details["train_areas"] == [1] and details["test_area"] == 5
    assert details["transfer"]["counts"]["mismatched"] == 0
    assert details["transfer"]["source"].startswith("random initialisation")


def test_semseg_needs_the_test_area(rooms, tmp_path):
    with pytest.raises(DatasetError, match="test area 3"):
        run_semseg(rooms, {"epochs": 1, "test_area": 3}, tmp_path / "x.json", "demo", 0, random_spec=TINY_POINTNEXT,
                   device="cpu", log=io.StringIO())


def test_config_refuses_segmentation_from_a_run_that_is_not_pretrained():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    validate_config(config)
    broken = copy.deepcopy(config)
    broken["demo"]["pretrain"]["runs"] = {"dgcnn": ["full"]}
    with pytest.raises(ConfigError, match="demo.downstream.semseg.variants"):
        validate_config(broken)
    broken = copy.deepcopy(config)
    broken["demo"]["downstream"]["partseg"]["seeds"] = [0, 7]
    with pytest.raises(ConfigError, match=r"demo.downstream.partseg.seeds.*\[7\]"):
        validate_config(broken)
    broken = copy.deepcopy(config)
    broken["paper"]["figure4"]["seed"] = 9
    with pytest.raises(ConfigError, match="paper.figure4"):
        validate_config(broken)


def test_partseg_of_a_converted_checkpoint_is_recorded_as_imported(standins, tmp_path):
    """A checkpoint `picat convert` imported (here from CrossPoint's layout) trains like any other,
    and its records say init "imported", variant "crosspoint": never a Pic@Point run."""
    import torch

    from picat.convert.files import export_checkpoint, import_checkpoint
    from picat.models.factory import backbone_checkpoint, build_point_backbone

    torch.manual_seed(0)
    options = TINY_DGCNN["options"]
    native = tmp_path / "native.pt"
    torch.save(backbone_checkpoint("dgcnn", options, False, "y", build_point_backbone("dgcnn", options),
                                   {"variant": None}), native)
    export_checkpoint(native, tmp_path / "crosspoint.pth", "crosspoint", log=lambda _: None)
    converted = tmp_path / "crosspoint.picat.pt"
    import_checkpoint(tmp_path / "crosspoint.pth", converted, "crosspoint",
                      options={"k": 4, "local_centres": 8}, log=lambda _: None)
    spec = {"format": "shapenetpart_txt", "root": str(standins / SHAPENETPART_LAYOUT), "normals": False}
    out = tmp_path / "partseg.json"
    records = run_partseg(spec, {"epochs": 1, "batch_size": 2, "n_points": 32, "k": 4, "lr": 0.01}, out, "demo", 0,
                          checkpoint=converted, device="cpu", log=io.StringIO())
    assert {(r["init"], r["variant"]) for r in records} == {("imported", "crosspoint")}
    assert set(load_results([out])["init"]) == {"imported"}
