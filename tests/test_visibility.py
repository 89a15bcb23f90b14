"""The cloud z-buffer visibility test of picat/pretrain/visibility.py against a brute-force
per-centre reference written here, on hand-made scenes (a wall hides what is behind it, not
what is in front or beside it; the depth tolerance), its invariance to the augmentation
rotation, bf16 autocast, and the config key that switches it on for pre-training."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml

from picat.config import ConfigError, validate_config
from picat.geometry import dodecahedron_cameras, look_at, perspective
from picat.pretrain.correspondence import random_rotations, rotate_with_cameras
from picat.pretrain.visibility import DEPTH_TOLERANCE, default_resolution, visible_centres

REPO_CONFIG = "config.yaml"

# ----------------------------------------------------------------------------- reference


def visible_reference(centres: np.ndarray, points: np.ndarray, view: np.ndarray, proj: np.ndarray, resolution: int,
                      window: int, tolerance: float) -> np.ndarray:
    """One object, one centre at a time: the nearest cloud point whose pixel lies within
    ``window`` pixels (rows and columns) of the centre's pixel, in float64."""

    def pixel_and_depth(xyz: np.ndarray) -> tuple[int, int, float, bool]:
        camera = view @ np.append(xyz, 1.0)
        clip = proj @ camera
        if clip[3] <= 1e-9:
            return 0, 0, 0.0, False
        u, v = (clip[0] / clip[3] + 1) / 2, (1 - clip[1] / clip[3]) / 2
        row, col = math.floor(v * resolution), math.floor(u * resolution)
        return row, col, -camera[2], 0 <= row < resolution and 0 <= col < resolution

    cloud = [pixel_and_depth(p) for p in points]
    out = np.zeros(len(centres), bool)
    for index, centre in enumerate(centres):
        row, col, depth, inside = pixel_and_depth(centre)
        if not inside:
            continue
        nearest = min((d for r, c, d, ok in cloud if ok and abs(r - row) <= window and abs(c - col) <= window),
                      default=math.inf)
        out[index] = depth <= nearest + tolerance
    return out


def camera(eye=(0.0, 0.0, 2.5), fov=50.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(1, 4, 4) view and projection of a camera at ``eye`` looking at the origin, y up."""
    view = look_at(np.array(eye), np.zeros(3), np.array([0.0, 1.0, 0.0]))
    return torch.tensor(view[None], dtype=torch.float64), torch.tensor(perspective(fov)[None], dtype=torch.float64)


def wall(z: float = 0.5, half: float = 0.3, step: float = 0.02) -> np.ndarray:
    """A dense square of points in the plane z, facing the camera on +z."""
    ticks = np.arange(-half, half + 1e-9, step)
    xs, ys = np.meshgrid(ticks, ticks)
    return np.stack([xs.ravel(), ys.ravel(), np.full(xs.size, z)], axis=1)


# ----------------------------------------------------------------------------- hand-made scenes


def test_a_wall_hides_what_is_behind_it_and_nothing_else():
    view, proj = camera()
    centres = np.array([
        [0.0, 0.0, -0.3],   # behind the wall: hidden
        [0.1, -0.1, 0.0],   # behind the wall, off centre: hidden
        [0.0, 0.0, 0.8],    # in front of the wall: visible
        [0.8, 0.0, -0.3],   # beside the wall, as deep as the first: visible
        [0.2, 0.2, 0.5],    # on the wall, away from the one in front: visible
    ])
    points = np.concatenate([wall(), centres])  # the centres are cloud points, as the backbones' are
    kept = visible_centres(torch.tensor(centres[None]), torch.tensor(points[None]), view, proj, resolution=64,
                           window=1, tolerance=0.1)
    assert kept.dtype == torch.bool and kept.shape == (1, 5)
    assert kept[0].tolist() == [False, False, True, True, True]


def test_tolerance_decides_for_a_centre_just_behind_the_wall():
    view, proj = camera()
    centres = np.array([[0.0, 0.0, 0.5 - 0.15]])  # 0.15 behind the wall's surface
    points = torch.tensor(np.concatenate([wall(), centres])[None])
    centres = torch.tensor(centres[None])
    assert visible_centres(centres, points, view, proj, resolution=64, window=1, tolerance=0.2).item()
    assert not visible_centres(centres, points, view, proj, resolution=64, window=1, tolerance=0.1).item()


def test_the_window_closes_holes_between_the_wall_samples():
    view, proj = camera()
    # A sparse wall: at 128 pixels its samples leave empty pixels, through which a bare
    # z-buffer (window 0) sees the centre behind; the 3 x 3 window does not.
    centres = np.array([[0.011, 0.013, -0.3]])
    points = torch.tensor(np.concatenate([wall(step=0.05), centres])[None])
    centres = torch.tensor(centres[None])
    assert visible_centres(centres, points, view, proj, resolution=128, window=0, tolerance=0.1).item()
    assert not visible_centres(centres, points, view, proj, resolution=128, window=2, tolerance=0.1).item()


def test_centres_outside_the_image_or_behind_the_camera_are_not_visible():
    view, proj = camera()
    centres = torch.tensor([[[5.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0]]], dtype=torch.float64)
    kept = visible_centres(centres, centres, view, proj)
    assert kept[0].tolist() == [False, False, True]


def test_a_sphere_shows_its_near_cap_and_hides_its_far_side():
    """From distance d a unit sphere shows the cap z > 1/d, (1 - 1/d) / 2 of its surface: 30 % at 2.5."""
    generator = torch.Generator().manual_seed(0)
    points = torch.randn(1, 1024, 3, generator=generator, dtype=torch.float64)
    points = points / points.norm(dim=-1, keepdim=True)
    view, proj = camera()
    kept = visible_centres(points, points, view, proj)[0]
    z = points[0, :, 2]
    truly = z > 1 / 2.5
    assert float((kept == truly).double().mean()) > 0.88  # the misses lie along the rim, within the tolerance
    assert float((kept & truly).sum() / truly.sum()) > 0.8
    # The far side stays mostly hidden. Not all of it: the sphere is the sparsest surface an
    # object in the unit sphere can have (1024 samples over 4 pi), and its near side, closest to
    # the camera, has the smallest pixels, so about a quarter of its 3 x 3 windows hold no
    # sample (1.4 expected) and let the far side through (docs/pretraining.md, "Occlusion").
    far = z < -0.5
    assert int(kept[far].sum()) <= 0.25 * int(far.sum())


# ----------------------------------------------------------------------------- against the reference


@pytest.mark.parametrize("resolution, window, tolerance", [(default_resolution(256), 1, DEPTH_TOLERANCE),
                                                           (16, 0, 0.05), (40, 2, 0.3)])
def test_batched_z_buffer_equals_the_per_centre_loop(resolution, window, tolerance):
    generator = torch.Generator().manual_seed(3)
    views, projs = dodecahedron_cameras(2.5, 50.0)
    batch = 4
    points = torch.randn(batch, 256, 3, generator=generator, dtype=torch.float64) * torch.tensor([0.6, 0.4, 0.3],
                                                                                               dtype=torch.float64)
    points = points / points.norm(dim=-1, keepdim=True).amax(dim=1, keepdim=True).clamp_min(1.0)
    # Centres: half of them cloud points, half free points anywhere in the unit cube.
    free = torch.rand(batch, 32, 3, generator=generator, dtype=torch.float64) * 2 - 1
    centres = torch.cat([points[:, ::8], free], dim=1)
    view = torch.tensor(views[[0, 5, 11, 17]])
    proj = torch.tensor(projs[:batch])
    kept = visible_centres(centres, points, view, proj, resolution=resolution, window=window, tolerance=tolerance)
    expected = np.stack([visible_reference(centres[b].numpy(), points[b].numpy(), view[b].numpy(), proj[b].numpy(),
                                           resolution, window, tolerance) for b in range(batch)])
    assert kept.numpy().tolist() == expected.tolist()
    assert 0.1 < expected.mean() < 0.9  # both answers occur


def test_visibility_follows_the_cloud_and_camera_through_the_rotation():
    generator = torch.Generator().manual_seed(5)
    views, projs = dodecahedron_cameras(2.5, 50.0)
    points = torch.randn(3, 512, 3, generator=generator)
    points = points / points.norm(dim=-1, keepdim=True)
    view, proj = torch.tensor(views[:3], dtype=torch.float32), torch.tensor(projs[:3], dtype=torch.float32)
    before = visible_centres(points[:, :64], points, view, proj)
    rotated, moved = rotate_with_cameras(points, view, random_rotations(3, "so3", generator=generator))
    after = visible_centres(rotated[:, :64], rotated, moved, proj)
    # The same pixels and depths up to float32 rounding: at most a centre or two on a boundary.
    assert (before != after).sum() <= 2 and 0.1 < before.float().mean() < 0.9


def test_float32_under_bf16_autocast_and_float64_kept():
    generator = torch.Generator().manual_seed(7)
    views, projs = dodecahedron_cameras(2.5, 50.0)
    points = torch.randn(2, 1024, 3, generator=generator)
    points = points / points.norm(dim=-1, keepdim=True)
    view, proj = torch.tensor(views[:2], dtype=torch.float32), torch.tensor(projs[:2], dtype=torch.float32)
    plain = visible_centres(points[:, :256], points, view, proj)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = visible_centres(points[:, :256], points, view, proj)
        from_bf16_centres = visible_centres(points[:, :256].bfloat16(), points, view, proj)
    assert torch.equal(plain, under_autocast)
    # bf16 centres (as an autocast backbone may return them) are rounded to 3 significant
    # digits: at most a few centres on a pixel or tolerance boundary change.
    assert (plain != from_bf16_centres).sum() <= 5
    as_double = visible_centres(points[:, :256].double(), points.double(), view.double(), proj.double())
    assert (plain != as_double).sum() <= 2


def test_bad_shapes_and_values_are_refused():
    view, proj = camera()
    good = torch.zeros(1, 4, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="centres must be"):
        visible_centres(good[0], good, view, proj)
    with pytest.raises(ValueError, match="points must be"):
        visible_centres(good, good[..., :2], view, proj)
    with pytest.raises(ValueError, match="view and proj"):
        visible_centres(good, good, view[0], proj)
    with pytest.raises(ValueError, match="resolution"):
        visible_centres(good, good, view, proj, resolution=0)
    with pytest.raises(ValueError, match="tolerance"):
        visible_centres(good, good, view, proj, tolerance=-1.0)


def test_default_resolution_grows_with_the_square_root_of_the_cloud():
    assert default_resolution(1024) == 32 and default_resolution(512) == 23 and default_resolution(4096) == 64


# ----------------------------------------------------------------------------- configuration


def test_config_rejects_an_unknown_occlusion_mode_naming_the_key():
    with open(REPO_CONFIG) as handle:
        config = yaml.safe_load(handle)
    assert config["demo"]["pretrain"]["occlusion"] == "all" and config["paper"]["pretrain"]["occlusion"] == "all"
    validate_config(config)
    config["paper"]["pretrain"]["occlusion"] = "hidden"
    with pytest.raises(ConfigError, match=r"'paper\.pretrain\.occlusion'.*'hidden'"):
        validate_config(config)
