import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from picat.geometry import dodecahedron_cameras, project_points, uv_to_pixels
from picat.pretrain.correspondence import project_to_cells, random_rotations, rotate_with_cameras
from picat.pretrain.losses import global_infonce, local_infonce


def normalised(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64), dim=-1)


def test_global_infonce_matches_hand_computation():
    z, q, tau = normalised(4, 8, seed=1), normalised(4, 8, seed=2), 0.1
    expected = 0.0
    for k in range(4):
        scores = [math.exp(float(z[k] @ q[j]) / tau) for j in range(4)]
        expected += -math.log(scores[k] / sum(scores))
    assert global_infonce(z, q, tau).item() == pytest.approx(expected / 4, rel=1e-9)


def test_local_infonce_matches_hand_computation_and_skips_invalid():
    m, n_local, grid, dim, tau = 3, 5, 2, 6, 0.07
    z, q = normalised(m, n_local, dim, seed=3), normalised(m, grid * grid, dim, seed=4)
    cells = torch.randint(0, grid * grid, (m, n_local), generator=torch.Generator().manual_seed(5))
    valid = torch.ones(m, n_local, dtype=torch.bool)
    valid[0, 1] = valid[2, 4] = False
    losses = []
    for obj in range(m):
        for local in range(n_local):
            if not valid[obj, local]:
                continue
            negatives = [math.exp(float(z[obj, local] @ q[k, c]) / tau) for k in range(m) for c in range(grid * grid)]
            positive = math.exp(float(z[obj, local] @ q[obj, cells[obj, local]]) / tau)
            losses.append(-math.log(positive / sum(negatives)))
    assert local_infonce(z, q, cells, valid, tau).item() == pytest.approx(sum(losses) / len(losses), rel=1e-9)


def test_local_infonce_with_no_valid_centre_is_zero_with_gradient():
    z = normalised(2, 3, 4).requires_grad_()
    loss = local_infonce(z, normalised(2, 4, 4), torch.zeros(2, 3, dtype=torch.long),
                         torch.zeros(2, 3, dtype=torch.bool), 0.1)
    loss.backward()
    assert loss.item() == 0.0 and torch.all(z.grad == 0)


def test_cells_agree_with_numpy_projection():
    views, projs = dodecahedron_cameras(2.5, 50.0)
    points = np.random.default_rng(0).uniform(-0.6, 0.6, size=(200, 3))
    for view, proj in zip(views[:5], projs[:5], strict=True):
        uv, _ = project_points(points, view, proj)
        rows, cols, inside = uv_to_pixels(uv, 7, 7)
        cells, valid = project_to_cells(torch.tensor(points)[None], torch.tensor(view)[None], torch.tensor(proj)[None])
        assert valid[0].numpy().tolist() == inside.tolist()
        assert np.array_equal(cells[0].numpy()[inside], (rows * 7 + cols)[inside])


def test_outside_and_behind_are_masked_not_clamped():
    views, projs = dodecahedron_cameras(2.5, 50.0)
    view, proj = torch.tensor(views[:1]), torch.tensor(projs[:1])
    eye = torch.linalg.inv(view)[0, :3, 3]
    far_side = torch.cross(eye, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), dim=0)
    behind = eye * 1.5  # behind the camera
    beside = far_side / far_side.norm() * 5.0  # far outside the field of view
    cells, valid = project_to_cells(torch.stack([torch.zeros(3, dtype=torch.float64), behind, beside])[None], view,
                                    proj)
    assert valid[0].tolist() == [True, False, False]
    assert cells[0, 0].item() == 3 * 7 + 3  # the origin is the image centre


@pytest.mark.parametrize("mode", ["up", "so3"])
def test_rotated_points_with_moved_camera_land_in_the_same_cells(mode):
    views, projs = dodecahedron_cameras(2.5, 50.0)
    batch = 20
    points = torch.tensor(np.random.default_rng(1).uniform(-0.7, 0.7, size=(batch, 300, 3)))
    normals = F.normalize(torch.randn(batch, 300, 3, dtype=torch.float64), dim=-1)
    view, proj = torch.tensor(views), torch.tensor(projs)
    rotation = random_rotations(batch, mode, "y", torch.Generator().manual_seed(0), dtype=torch.float64)
    np.testing.assert_allclose((rotation @ rotation.transpose(1, 2)).numpy(), np.tile(np.eye(3), (batch, 1, 1)),
                               atol=1e-12)
    assert torch.allclose(torch.linalg.det(rotation), torch.ones(batch, dtype=torch.float64))
    rotated, rotated_view = rotate_with_cameras(torch.cat([points, normals], -1), view, rotation)
    assert not torch.allclose(rotated[..., :3], points)
    before = project_to_cells(points, view, proj)
    after = project_to_cells(rotated[..., :3], rotated_view, proj)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])
    assert torch.allclose(rotated[..., 3:], normals @ rotation.transpose(1, 2))
    if mode == "up":
        assert torch.allclose(rotated[..., 1], points[..., 1])  # heights unchanged


def test_bad_rotation_mode():
    with pytest.raises(ValueError, match="rotation mode"):
        random_rotations(2, "yaw")
