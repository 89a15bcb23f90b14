"""The neighbour ops of picat/models/ops.py against naive brute-force references written here:
farthest point sampling, ball query, k nearest neighbours, squared distances and gathers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from picat.models.ops import ball_query, farthest_point_sample, gather_points, knn, squared_distances

# ----------------------------------------------------------------------------- references


def fps_reference(xyz: np.ndarray, n_samples: int, start: int = 0) -> np.ndarray:
    """Textbook FPS on one cloud (N, 3): the point farthest from the chosen set, first on ties."""
    chosen = [start]
    min_d2 = np.full(len(xyz), np.inf)
    for _ in range(n_samples - 1):
        min_d2 = np.minimum(min_d2, ((xyz - xyz[chosen[-1]]) ** 2).sum(-1))
        chosen.append(int(np.argmax(min_d2)))
    return np.array(chosen)


def ball_query_reference(radius: float, k: int, xyz: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The CUDA kernel's rule, one centre at a time; nearest point where the ball is empty."""
    out = np.empty((len(centres), k), dtype=np.int64)
    for s, centre in enumerate(centres):
        d2 = ((xyz - centre) ** 2).sum(-1)
        inside = [j for j in range(len(xyz)) if d2[j] < radius * radius][:k]
        if not inside:
            inside = [int(np.argmin(d2))]
        out[s] = inside + [inside[0]] * (k - len(inside))
    return out


def rand_points(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=generator, dtype=dtype) * 2 - 1


# ----------------------------------------------------------------------------- ops


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fps_matches_reference(dtype: torch.dtype) -> None:
    xyz = rand_points(3, 50, 3, dtype=dtype)
    idx = farthest_point_sample(xyz, 20)
    assert idx.shape == (3, 20) and idx.dtype == torch.long
    for b in range(3):
        np.testing.assert_array_equal(idx[b].numpy(), fps_reference(xyz[b].numpy(), 20))
    idx = farthest_point_sample(xyz, 20, start=7)
    np.testing.assert_array_equal(idx[1].numpy(), fps_reference(xyz[1].numpy(), 20, start=7))


def test_fps_covers_every_point_and_random_start() -> None:
    xyz = rand_points(2, 30, 3)
    idx = farthest_point_sample(xyz, np.int64(30))  # numpy integers are counts too
    assert all(sorted(row.tolist()) == list(range(30)) for row in idx)  # a permutation
    first = farthest_point_sample(xyz, 5, start="random", generator=torch.Generator().manual_seed(3))
    again = farthest_point_sample(xyz, 5, start="random", generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    for b in range(2):
        np.testing.assert_array_equal(first[b].numpy(), fps_reference(xyz[b].numpy(), 5, start=int(first[b, 0])))


def test_ball_query_matches_reference() -> None:
    xyz = rand_points(2, 60, 3, seed=1)
    centres = torch.cat([xyz[:, :10], rand_points(2, 5, 3, seed=2) * 3], dim=1)  # some far outside
    for radius, k in [(0.3, 4), (0.6, 16), (0.05, 3), (2.0, 70)]:
        idx = ball_query(radius, k, xyz, centres)
        assert idx.shape == (2, 15, k) and idx.dtype == torch.long
        for b in range(2):
            ref = ball_query_reference(radius, k, xyz[b].numpy(), centres[b].numpy())
            np.testing.assert_array_equal(idx[b].numpy(), ref)


def test_ball_query_padding_boundary_and_empty_ball() -> None:
    # Points on the x axis at 0, 0.25, 0.5, ..., 1.75 (exact in binary floating point).
    xyz = torch.zeros(1, 8, 3)
    xyz[0, :, 0] = torch.arange(8) * 0.25
    centres = torch.tensor([[[0.5, 0.0, 0.0], [0.6, 0.0, 0.0], [9.0, 0.0, 0.0], [-3.0, 1.0, 0.0]]])
    idx = ball_query(0.25, 5, xyz, centres)[0].tolist()
    assert idx[0] == [2, 2, 2, 2, 2]  # 0.25 and 0.75 lie exactly on the sphere: outside (d2 < r2 is strict)
    assert idx[1] == [2, 3, 2, 2, 2]  # two inside, padded with the first
    assert idx[2] == [7] * 5  # nothing inside: the nearest point
    assert idx[3] == [0] * 5
    assert ball_query(0.3, 2, xyz, centres)[0, 1].tolist() == [2, 3]  # truncated to K in index order


def test_knn_and_squared_distances_match_brute_force() -> None:
    xyz = rand_points(2, 40, 3, seed=4)
    centres = rand_points(2, 7, 3, seed=5)
    d2 = squared_distances(xyz, centres)
    ref = ((centres[:, :, None, :].double() - xyz[:, None, :, :].double()) ** 2).sum(-1)
    torch.testing.assert_close(d2.double(), ref, rtol=1e-6, atol=1e-6)
    dist, idx = knn(5, xyz, centres)
    assert dist.shape == idx.shape == (2, 7, 5)
    order = np.argsort(ref.numpy(), axis=-1, kind="stable")[..., :5]
    np.testing.assert_array_equal(idx.numpy(), order)
    torch.testing.assert_close(dist.double(), ref.gather(-1, idx).sqrt(), rtol=1e-5, atol=1e-6)
    assert torch.all(dist[..., 1:] >= dist[..., :-1])


def test_gather_points_layouts_and_gradient() -> None:
    features = torch.randn(2, 6, 4, requires_grad=True)  # (B, N, C)
    idx = torch.tensor([[[0, 5], [5, 5], [1, 2]], [[3, 3], [4, 0], [2, 1]]])  # (B, S, K)
    out = gather_points(features, idx)
    assert out.shape == (2, 3, 2, 4)
    for b in range(2):
        torch.testing.assert_close(out[b], features[b][idx[b]])
    out_cf = gather_points(features.transpose(1, 2), idx[:, :, 0], channels_first=True)
    assert out_cf.shape == (2, 4, 3)
    torch.testing.assert_close(out_cf.transpose(1, 2), out[:, :, 0])
    out.sum().backward()
    counts = torch.stack([torch.bincount(idx[b].flatten(), minlength=6) for b in range(2)]).float()
    torch.testing.assert_close(features.grad, counts[:, :, None].expand(-1, -1, 4))


def test_ops_reject_bad_input() -> None:
    xyz = rand_points(2, 10, 3)
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        farthest_point_sample(xyz[..., :2], 4)
    with pytest.raises(ValueError, match="floating"):
        farthest_point_sample(xyz.long(), 4)
    with pytest.raises(ValueError, match="n_samples.*got 11"):
        farthest_point_sample(xyz, 11)
    with pytest.raises(ValueError, match="n_samples.*got 0"):
        farthest_point_sample(xyz, 0)
    with pytest.raises(ValueError, match="n_samples.*got 2.5"):
        farthest_point_sample(xyz, 2.5)
    with pytest.raises(ValueError, match="'middle'"):
        farthest_point_sample(xyz, 3, start="middle")
    with pytest.raises(ValueError, match="start"):
        farthest_point_sample(xyz, 3, start=10)
    with pytest.raises(ValueError, match="radius"):
        ball_query(0.0, 4, xyz, xyz)
    with pytest.raises(ValueError, match="n_samples"):
        ball_query(0.1, 0, xyz, xyz)
    with pytest.raises(ValueError, match="batch size"):
        ball_query(0.1, 4, xyz, xyz[:1])
    with pytest.raises(ValueError, match="k must.*got 11"):
        knn(11, xyz, xyz)
    with pytest.raises(ValueError, match="torch.long"):
        gather_points(xyz, torch.zeros(2, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="3-D"):
        gather_points(xyz[0], torch.zeros(2, 3, dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="torch.cuda.is_available() is False: CPU/CUDA agreement not checked here")
def test_ops_on_cuda_match_the_cpu() -> None:
    xyz = rand_points(2, 512, 3, seed=14)
    cuda = xyz.cuda()
    assert torch.equal(farthest_point_sample(cuda, 64).cpu(), farthest_point_sample(xyz, 64))
    assert torch.equal(ball_query(0.2, 16, cuda, cuda[:, :64]).cpu(), ball_query(0.2, 16, xyz, xyz[:, :64]))
    assert torch.equal(knn(8, cuda, cuda[:, :64])[1].cpu(), knn(8, xyz, xyz[:, :64])[1])
