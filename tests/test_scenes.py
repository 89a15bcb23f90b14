"""Room sampling: voxel sub-sampling, nearest-neighbour crops and whole-scene sub-clouds that
cover every point."""

from __future__ import annotations

import numpy as np
import pytest

from picat.downstream.scenes import (
    build_voxel_grid,
    crop_nearest,
    pad_by_resampling,
    voxel_subsample,
    whole_scene_subclouds,
)

VOXEL = 0.2


def room_xyz(seed: int = 0, n: int = 500) -> np.ndarray:
    """Points in a 2 x 1.5 x 1 m box, with a dense clump so some voxels hold many points."""
    rng = np.random.default_rng(seed)
    spread = rng.uniform([0, 0, 0], [2.0, 1.5, 1.0], size=(n - 60, 3))
    clump = rng.uniform([0.41, 0.41, 0.41], [0.59, 0.59, 0.59], size=(60, 3))
    return np.r_[spread, clump] + np.array([10.0, -3.0, 0.5])  # off the origin, as S3DIS areas are


def voxel_ids(xyz: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Voxel id of each point of ``xyz`` in the grid of ``reference`` (independent of the code)."""
    keys = np.floor((xyz - reference.min(axis=0)) / VOXEL).astype(np.int64)
    return keys[:, 0] * 10_000 + keys[:, 1] * 100 + keys[:, 2]


def test_whole_scene_subclouds_cover_every_point_with_one_point_per_voxel():
    xyz = room_xyz()
    subclouds = whole_scene_subclouds(xyz, VOXEL, np.random.default_rng(3))
    ids = voxel_ids(xyz, xyz)
    occupied, per_voxel = np.unique(ids, return_counts=True)
    # COVERAGE: every point of the room is in some sub-cloud, so every point gets a prediction.
    covered = np.zeros(len(xyz), dtype=bool)
    for index in subclouds:
        covered[index] = True
        # exactly one point of every occupied voxel
        assert len(index) == len(occupied)
        np.testing.assert_array_equal(np.sort(ids[index]), occupied)
    assert covered.all()
    assert len(subclouds) == per_voxel.max() > 10  # the clump makes a full voxel
    # the sub-cloud count is as small as coverage allows: sub-clouds beyond a voxel's count reuse its points
    assert sum(len(index) for index in subclouds) == len(subclouds) * len(occupied)


def test_whole_scene_subclouds_cover_a_room_in_a_single_voxel_and_are_deterministic():
    xyz = np.random.default_rng(1).uniform(0, 0.01, size=(7, 3))
    subclouds = whole_scene_subclouds(xyz, VOXEL, np.random.default_rng(0))
    assert len(subclouds) == 7 and all(len(index) == 1 for index in subclouds)
    assert sorted(int(index[0]) for index in subclouds) == list(range(7))
    again = whole_scene_subclouds(xyz, VOXEL, np.random.default_rng(0))
    assert all(np.array_equal(a, b) for a, b in zip(subclouds, again, strict=True))
    other = whole_scene_subclouds(room_xyz(), VOXEL, np.random.default_rng(1))
    first = whole_scene_subclouds(room_xyz(), VOXEL, np.random.default_rng(2))
    assert not all(np.array_equal(a, b) for a, b in zip(other, first, strict=True))  # the order within voxels is random


def test_voxel_subsample_keeps_one_random_point_per_voxel():
    xyz = room_xyz()
    ids = voxel_ids(xyz, xyz)
    index = voxel_subsample(xyz, VOXEL, np.random.default_rng(5))
    np.testing.assert_array_equal(np.sort(ids[index]), np.unique(ids))
    np.testing.assert_array_equal(index, voxel_subsample(xyz, VOXEL, np.random.default_rng(5)))
    draws = np.stack([voxel_subsample(xyz, VOXEL, np.random.default_rng(seed)) for seed in range(20)])
    # the clump voxel has many points, so its representative varies between draws
    assert len(np.unique(draws, axis=0)) > 1
    grid = build_voxel_grid(xyz, VOXEL)
    assert grid.counts.sum() == len(xyz) and np.array_equal(np.sort(grid.order), np.arange(len(xyz)))


def test_crop_nearest_takes_a_ball_of_max_points_or_everything():
    xyz = room_xyz()
    assert np.array_equal(crop_nearest(xyz, 600, np.random.default_rng(0)), np.arange(len(xyz)))
    crop = crop_nearest(xyz, 64, np.random.default_rng(0))
    assert len(crop) == 64 == len(np.unique(crop))
    np.testing.assert_array_equal(crop, crop_nearest(xyz, 64, np.random.default_rng(0)))
    outside = np.setdiff1d(np.arange(len(xyz)), crop)
    # some member of the crop is its centre: no point outside is nearer to it than the crop's farthest
    def is_centre(c):
        distance = np.linalg.norm(xyz - xyz[c], axis=1)
        return distance[crop].max() <= distance[outside].min()
    assert any(is_centre(c) for c in crop)
    assert not np.array_equal(crop, crop_nearest(xyz, 64, np.random.default_rng(1)))


def test_pad_by_resampling_repeats_members_up_to_size():
    rng = np.random.default_rng(0)
    padded = pad_by_resampling(np.array([4, 9, 2]), 10, rng)
    assert len(padded) == 10 and set(padded.tolist()) == {2, 4, 9} and padded[:3].tolist() == [4, 9, 2]
    with pytest.raises(ValueError, match="cannot pad"):
        pad_by_resampling(np.arange(5), 3, rng)


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="voxel_size"):
        whole_scene_subclouds(room_xyz(), 0.0, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        voxel_subsample(np.zeros((5, 2)), VOXEL, np.random.default_rng(0))
    with pytest.raises(ValueError, match="non-finite"):
        crop_nearest(np.full((4, 3), np.nan), 2, np.random.default_rng(0))
