"""PointNeXt-S and its point ops: brute-force references, shapes, parameter count, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from picat.models.ops import ball_query, farthest_point_sample, gather_points, knn, squared_distances
from picat.models.pointnext import (
    PointNeXtClassifier,
    PointNeXtConfig,
    PointNeXtEncoder,
    _GroupedMLP,
    count_parameters,
)


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


# ----------------------------------------------------------------------------- encoder


@pytest.fixture(scope="module")
def encoder() -> PointNeXtEncoder:
    torch.manual_seed(0)
    return PointNeXtEncoder().eval()


@pytest.fixture(scope="module")
def cloud() -> torch.Tensor:
    return rand_points(2, 1024, 3, seed=10)


def test_config_matches_official_pointnext_s() -> None:
    cfg = PointNeXtConfig()
    assert cfg.channels == (32, 64, 128, 256, 512, 512)
    assert cfg.in_channels == 4
    np.testing.assert_allclose([r[0] for r in cfg.radii], [0.15, 0.15, 0.225, 0.3375, 0.50625, 0.759375])
    assert PointNeXtConfig(use_normals=True).in_channels == 7
    assert PointNeXtConfig(use_height=False).in_channels == 3


def test_parameter_count() -> None:
    model = PointNeXtClassifier(40)
    n = count_parameters(model)
    print(f"PointNeXt-S classifier, 40 classes: {n:,} parameters (encoder {count_parameters(model.encoder):,})")
    assert 1.3e6 <= n <= 1.5e6  # the paper's table 2: 1.4 M
    # The official configs' own counts: 1.367 M (ScanObjectNN, 15 classes, xyz + height) and
    # 1.374 M (ModelNet40, xyz only).
    assert round(count_parameters(PointNeXtClassifier(15)) / 1e6, 3) == 1.367
    assert round(count_parameters(PointNeXtClassifier(40, PointNeXtConfig(use_height=False))) / 1e6, 3) == 1.374


@pytest.fixture(scope="module")
def outputs(encoder: PointNeXtEncoder, cloud: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        return encoder.forward_features(cloud)


def test_encoder_shapes_and_local_global_relation(encoder: PointNeXtEncoder, cloud: torch.Tensor, outputs) -> None:
    global_feat, local, centres = outputs
    assert encoder.global_dim == encoder.local_dim == 512 and encoder.local_stride == 16
    assert global_feat.shape == (2, 512)
    assert local.shape == (2, 512, 64)
    assert centres.shape == (2, 64, 3)
    assert torch.equal(global_feat, local.max(dim=-1).values)
    # Centres are input points: the last of four FPS rounds (1024 -> 512 -> ... -> 64).
    assert torch.all(squared_distances(cloud, centres).min(dim=-1).values == 0)


def test_eval_is_deterministic_and_per_sample(encoder: PointNeXtEncoder, cloud: torch.Tensor, outputs) -> None:
    with torch.no_grad():
        assert torch.equal(encoder(cloud), outputs[0])
        alone = encoder.forward_features(cloud[1:])
    for a, b in zip(outputs, alone):  # no leak across the batch in eval mode
        torch.testing.assert_close(a[1:], b, rtol=1e-5, atol=1e-5)
    torch.manual_seed(0)
    twin = PointNeXtEncoder().state_dict()
    assert all(torch.equal(value, twin[key]) for key, value in encoder.state_dict().items())


def test_grouped_mlp_split_equals_linear_over_concatenation() -> None:
    torch.manual_seed(1)
    mlp = _GroupedMLP([5 + 3, 6, 4], last_act=False).eval()
    features = torch.randn(2, 9, 5)
    idx = torch.randint(0, 9, (2, 3, 4))
    dp = torch.randn(2, 3, 4, 3)
    out = mlp(dp, features, idx)
    stacked = torch.cat([dp, gather_points(features, idx)], dim=-1)  # textbook [dp, f_j]
    h = torch.relu(mlp.first_norm(mlp.first(stacked).reshape(-1, 6)))
    torch.testing.assert_close(out, mlp.rest(h).reshape(2, 3, 4, 4))


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = PointNeXtClassifier(5).train()
    points = rand_points(3, 128, 3, seed=11)
    loss = torch.nn.functional.cross_entropy(model(points), torch.tensor([0, 1, 4]))
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_height_normals_and_up_axis() -> None:
    points = rand_points(1, 32, 6, seed=12)
    points[..., 3:] = torch.nn.functional.normalize(points[..., 3:], dim=-1)
    enc = PointNeXtEncoder(PointNeXtConfig(width=8, use_normals=True, up_axis="z"))
    xyz, features = enc.input_features(points)
    assert features.shape == (1, 32, 7)
    torch.testing.assert_close(features[..., :3], points[..., :3])
    torch.testing.assert_close(features[..., 3], points[..., 2] - points[..., 2].min())
    torch.testing.assert_close(features[..., 4:], points[..., 3:])
    global_feat, local, centres = enc.eval().forward_features(points)
    assert global_feat.shape == (1, 128) and local.shape == (1, 128, 2) and centres.shape == (1, 2, 3)
    _, features_y = PointNeXtEncoder(PointNeXtConfig(width=8)).input_features(points[..., :3])
    torch.testing.assert_close(features_y[..., 3], points[..., 1] - points[..., 1].min())
    # Height is translation invariant along the up axis.
    shifted = points[..., :3] + torch.tensor([0.0, 5.0, 0.0])
    _, features_shifted = PointNeXtEncoder(PointNeXtConfig(width=8)).input_features(shifted)
    torch.testing.assert_close(features_shifted[..., 3], features_y[..., 3])


def test_inverted_residual_blocks() -> None:
    torch.manual_seed(0)
    cfg = PointNeXtConfig(width=8, blocks=(2, 2, 1, 1, 3, 1))
    model = PointNeXtClassifier(3, cfg)
    assert cfg.radii[1] == pytest.approx((0.15, 0.225)) and cfg.radii[4] == pytest.approx((0.50625, 0.759375, 0.759375))
    points = rand_points(2, 64, 3, seed=13)
    model(points).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    _, local, centres = model.encoder.eval().forward_features(points)
    assert local.shape == (2, 128, 4) and centres.shape == (2, 4, 3)


def test_classifier_wraps_a_given_encoder() -> None:
    enc = PointNeXtEncoder(PointNeXtConfig(width=8))
    model = PointNeXtClassifier(7, encoder=enc, dropout=0.0)
    assert model.encoder is enc
    assert model.eval()(rand_points(3, 32, 3)).shape == (3, 7)
    with pytest.raises(ValueError, match="differs"):
        PointNeXtClassifier(7, PointNeXtConfig(width=16), encoder=enc)


def test_encoder_rejects_bad_input(encoder: PointNeXtEncoder) -> None:
    with pytest.raises(ValueError, match=r"\(2, 1024\)"):
        encoder(torch.zeros(2, 1024))
    with pytest.raises(ValueError, match="use_normals"):
        encoder(torch.zeros(2, 1024, 6))
    with pytest.raises(ValueError, match="floating"):
        encoder(torch.zeros(2, 1024, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="N >= 16"):
        encoder(torch.zeros(2, 15, 3))
    with pytest.raises(ValueError, match="3 columns"):
        encoder(torch.zeros(1, 32, 4))
    with pytest.raises(ValueError, match="6 columns"):
        PointNeXtEncoder(PointNeXtConfig(width=8, use_normals=True))(torch.zeros(1, 32, 3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"strides": (2, 2, 1)}, "strides"),
        ({"strides": (1, 2, 1, 1)}, "strides"),
        ({"blocks": (1, 1, 1, 1, 1, 2)}, "blocks"),
        ({"blocks": (1, 1)}, "blocks"),
        ({"up_axis": "w"}, "'w'"),
        ({"radius": 0.0}, "radius"),
        ({"width": 0}, "width"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PointNeXtConfig(**kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda.is_available() is False: CPU/CUDA agreement not checked here")
def test_cuda_matches_cpu() -> None:
    xyz = rand_points(2, 512, 3, seed=14)
    cuda = xyz.cuda()
    assert torch.equal(farthest_point_sample(cuda, 64).cpu(), farthest_point_sample(xyz, 64))
    assert torch.equal(ball_query(0.2, 16, cuda, cuda[:, :64]).cpu(), ball_query(0.2, 16, xyz, xyz[:, :64]))
    assert torch.equal(knn(8, cuda, cuda[:, :64])[1].cpu(), knn(8, xyz, xyz[:, :64])[1])
    torch.manual_seed(0)
    model = PointNeXtEncoder().eval()
    with torch.no_grad():
        expected = model.forward_features(xyz)
        got = model.cuda().forward_features(cuda)
    for a, b in zip(expected, got):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-3, atol=1e-3)
    model.train()(cuda).sum().backward()
