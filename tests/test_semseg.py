"""The scene-segmentation protocol on tiny synthetic rooms with stand-in networks of the
``model(xyz (B, N, 3), colours (B, N, 3)) -> (B, N, 13)`` signature."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from torch import nn

from picat.datasets.s3dis import S3DIS_CLASSES, Room
from picat.downstream.scenes import build_voxel_grid
from picat.downstream.semseg import (
    COLOR_MEAN,
    COLOR_STD,
    SemSegSettings,
    evaluate_scene_segmenter,
    run_scene_segmentation,
    scene_inputs,
    train_scene_segmenter,
    training_crop,
)

VOXEL = 0.2
PRESENT = (0, 1, 2, 7)  # ceiling, floor, wall, table


def make_room(name: str, area: int, seed: int) -> Room:
    """A 3 x 2.5 x 2.5 m room of ~500 points: floor, ceiling, two walls and a table; the red
    channel encodes the class (20 * label + 10, +-3) so an oracle can read it back."""
    rng = np.random.default_rng(seed)
    pieces = [
        (1, rng.uniform([0, 0, 0], [3, 2.5, 0.02], (150, 3))),
        (0, rng.uniform([0, 0, 2.48], [3, 2.5, 2.5], (120, 3))),
        (2, np.r_[rng.uniform([0, 0, 0], [0.02, 2.5, 2.5], (60, 3)),
                  rng.uniform([2.98, 0, 0], [3, 2.5, 2.5], (60, 3))]),
        (7, rng.uniform([1.0, 0.8, 0.7], [2.0, 1.6, 0.75], (110, 3))),
    ]
    labels = np.concatenate([np.full(len(xyz), label) for label, xyz in pieces]).astype(np.int64)
    points = np.concatenate([xyz for _, xyz in pieces]) + np.array([20.0, 5.0, 1.2])  # S3DIS-like offsets
    red = 20.0 * labels + 10 + rng.uniform(-3, 3, len(labels))
    colors = np.c_[red, rng.uniform(0, 255, (len(labels), 2))]
    return Room(name, area, points.astype(np.float32), colors.astype(np.float32), labels)


def decode_labels(colours: torch.Tensor) -> torch.Tensor:
    """The class from the normalised red channel (undoing scene_inputs' standardisation)."""
    red = (colours[..., 0] * float(COLOR_STD[0]) + float(COLOR_MEAN[0])) * 255.0
    return torch.round((red - 10) / 20).long().clamp(0, 12)


class ColourOracle(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, xyz: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return 10.0 * nn.functional.one_hot(decode_labels(colours), 13).float()


class AlwaysWall(nn.Module):
    def forward(self, xyz: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(xyz.shape[0], xyz.shape[1], 13)
        logits[..., 2] = 1.0
        return logits


class TinySceneSegmenter(nn.Module):
    """A per-point MLP on xyz and colours plus a pooled context term."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.point = nn.Sequential(nn.Linear(6, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())
        self.head = nn.Linear(2 * width, 13)

    def forward(self, xyz: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
        features = self.point(torch.cat([xyz, colours], dim=-1))
        context = features.mean(dim=1, keepdim=True).expand_as(features)
        return self.head(torch.cat([features, context], dim=-1))


def tiny_settings(**overrides) -> SemSegSettings:
    values = dict(epochs=6, batch_size=2, voxel_size=VOXEL, max_points=96, crops_per_room=2, lr=0.01, min_lr=0.001)
    return SemSegSettings(**{**values, **overrides})


def test_scene_inputs_centre_xy_measure_z_from_the_floor_and_standardise_colours():
    room = make_room("Area_1_office_1", 1, seed=0)
    xyz, colours = scene_inputs(room.points, room.colors)
    np.testing.assert_allclose(xyz[:, :2].mean(axis=0), 0, atol=1e-4)
    assert xyz[:, 2].min() == 0 and xyz[:, 2].max() == pytest.approx(2.5, abs=0.01)
    _, mean_colours = scene_inputs(np.zeros((2, 3)), np.tile(COLOR_MEAN * 255, (2, 1)))
    np.testing.assert_allclose(mean_colours, 0, atol=1e-5)
    assert (decode_labels(torch.from_numpy(colours)).numpy() == room.labels).all()
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        scene_inputs(room.points, room.colors[:, :2])


def test_training_crops_are_fixed_size_and_keep_points_with_their_labels():
    room = make_room("Area_1_office_1", 1, seed=1)
    grid = build_voxel_grid(room.points, VOXEL)
    settings = tiny_settings(auto_contrast=0.0, color_drop=0.0)
    for max_points in (40, 10 * grid.n_voxels):  # a real crop, and a room padded by repeats
        xyz, colours, labels = training_crop(room, grid, tiny_settings(max_points=max_points, auto_contrast=0.0,
                                                                       color_drop=0.0), np.random.default_rng(0))
        assert xyz.shape == colours.shape == (max_points, 3) and labels.shape == (max_points,)
        assert xyz.dtype == colours.dtype == np.float32
        np.testing.assert_array_equal(decode_labels(torch.from_numpy(colours)).numpy(), labels)
        assert xyz[:, 2].min() >= -settings.jitter_clip - 1e-6
    dropped = training_crop(room, grid, tiny_settings(color_drop=1.0), np.random.default_rng(0))[1]
    np.testing.assert_allclose(dropped, np.broadcast_to(-COLOR_MEAN / COLOR_STD, dropped.shape), rtol=1e-5)


def test_whole_scene_oracle_scores_100_and_every_point_is_predicted():
    rooms = [make_room("Area_5_office_1", 5, seed=2), make_room("Area_5_office_2", 5, seed=3)]
    oracle = ColourOracle()
    scores = evaluate_scene_segmenter(oracle, rooms, tiny_settings(), seed=0, log=io.StringIO())
    assert scores["miou"] == pytest.approx(100.0) and scores["overall_accuracy"] == pytest.approx(100.0)
    assert scores["n_rooms"] == 2 and scores["n_points"] == sum(len(room.labels) for room in rooms)
    # every sub-cloud went through the model alone, and there is more than one per room
    assert oracle.calls == scores["n_subclouds"] > 2
    absent = [c for c in range(13) if c not in PRESENT]
    assert all(math.isnan(scores["iou"][c]) for c in absent)
    assert math.isnan(scores["per_class_iou"]["sofa"]) and scores["per_class_iou"]["table"] == pytest.approx(100.0)


def test_whole_scene_scores_by_hand_for_a_constant_prediction():
    rooms = [make_room("Area_5_office_1", 5, seed=4), make_room("Area_5_office_2", 5, seed=5)]
    scores = evaluate_scene_segmenter(AlwaysWall(), rooms, tiny_settings(), seed=0, log=io.StringIO())
    labels = np.concatenate([room.labels for room in rooms])
    walls = (labels == 2).mean()
    # IoU: wall = n_wall / N (everything predicted wall), the other present classes 0
    assert scores["miou"] == pytest.approx(100 * walls / len(PRESENT))
    assert scores["macc"] == pytest.approx(100 / len(PRESENT))
    assert scores["overall_accuracy"] == pytest.approx(100 * walls)
    assert scores["iou"][S3DIS_CLASSES.index("wall")] == pytest.approx(100 * walls)


def test_training_lowers_the_loss_and_a_run_is_reproducible():
    train = [make_room("Area_1_office_1", 1, seed=6), make_room("Area_2_office_1", 2, seed=7)]
    test = [make_room("Area_5_office_1", 5, seed=8)]
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        settings = tiny_settings(lr=0.03, crops_per_room=4, label_smoothing=0.0)
        results.append(run_scene_segmentation(TinySceneSegmenter(), train, test, settings, seed=1, log=io.StringIO()))
    history = results[0]["history"]
    assert len(history) == 6 and history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    assert [row["train_loss"] for row in history] == [row["train_loss"] for row in results[1]["history"]]
    assert results[0]["test"]["miou"] == results[1]["test"]["miou"]
    assert results[0]["test"]["n_points"] == len(test[0].labels)
    assert results[0]["settings"]["voxel_size"] == VOXEL and results[0]["n_train_rooms"] == 2


def test_test_area_leaks_and_settings_errors_are_named():
    room1, room5 = make_room("Area_1_office_1", 1, seed=9), make_room("Area_5_office_1", 5, seed=10)
    with pytest.raises(ValueError, match="test area 5"):
        run_scene_segmentation(TinySceneSegmenter(), [room1, room5], [room5], tiny_settings(), seed=0,
                               log=io.StringIO())
    with pytest.raises(ValueError, match="not in the test area"):
        run_scene_segmentation(TinySceneSegmenter(), [room1], [room1], tiny_settings(), seed=0, log=io.StringIO())
    with pytest.raises(ValueError, match="downstream.semseg.*loops"):
        SemSegSettings.of({"loops": 30})
    with pytest.raises(ValueError, match="downstream.semseg.voxel_size"):
        SemSegSettings.of({"voxel_size": 0})
    with pytest.raises(ValueError, match="downstream.semseg.batch_size"):
        train_scene_segmenter(TinySceneSegmenter(), [room1], tiny_settings(batch_size=3, crops_per_room=1), seed=0,
                              log=io.StringIO())

    class Wrong(nn.Module):
        def forward(self, xyz, colours):
            return torch.zeros(xyz.shape[0], xyz.shape[1], 20)

    with pytest.raises(ValueError, match="expected"):
        evaluate_scene_segmenter(Wrong(), [room5], tiny_settings(), seed=0, log=io.StringIO())
