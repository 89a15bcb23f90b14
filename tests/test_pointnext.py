"""PointNeXt-S: configuration, parameter count, shapes, gradients (its neighbour ops: test_ops.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_ops import rand_points

from picat.models.ops import gather_points, squared_distances
from picat.models.pointnext import (
    PointNeXtClassifier,
    PointNeXtConfig,
    PointNeXtEncoder,
    _GroupedMLP,
    count_parameters,
)

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
    for a, b in zip(outputs, alone, strict=True):  # no leak across the batch in eval mode
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


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="torch.cuda.is_available() is False: CPU/CUDA agreement not checked here")
def test_encoder_on_cuda_matches_the_cpu() -> None:
    xyz = rand_points(2, 512, 3, seed=14)
    cuda = xyz.cuda()
    torch.manual_seed(0)
    model = PointNeXtEncoder().eval()
    with torch.no_grad():
        expected = model.forward_features(xyz)
        got = model.cuda().forward_features(cuda)
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(b.cpu(), a, rtol=1e-3, atol=1e-3)
    model.train()(cuda).sum().backward()
