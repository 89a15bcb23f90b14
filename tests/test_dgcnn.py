"""picat.models.dgcnn: the fast DGCNN equals the textbook one (tests/dgcnn_reference.py).

Equality is checked in float64, where the two must agree to rounding, for outputs, running
statistics and gradients w.r.t. inputs and every parameter, in train and eval mode, with
batch-norm scales of both signs (a negative scale turns the max over neighbours into a min).
"""

from __future__ import annotations

import itertools

import pytest
import torch
from dgcnn_reference import ReferenceDGCNN
from dgcnn_reference import knn as reference_knn
from torch import Tensor, nn

from picat.models.dgcnn import DGCNN, DGCNNConfig, EdgeConv, _farthest_point_sample, _knn

SMALL = DGCNNConfig(k=8, emb_dims=48)  # the default edge channels, a small embedding


def randomise(model: nn.Module, seed: int) -> None:
    """Give every batch norm scales of both signs and random shifts and running statistics."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                size = module.weight.shape
                sign = torch.where(torch.rand(size, generator=generator) < 0.3, -1.0, 1.0)
                module.weight.copy_(sign * (0.5 + torch.rand(size, generator=generator)))
                module.bias.copy_(0.2 * torch.randn(size, generator=generator))
                module.running_mean.copy_(0.3 * torch.randn(size, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(size, generator=generator))


def make_pair(config: DGCNNConfig = SMALL, dtype: torch.dtype = torch.float64, seed: int = 0,
              device: str = "cpu") -> tuple[DGCNN, ReferenceDGCNN]:
    """A fast model and a textbook model with identical parameters and buffers."""
    torch.manual_seed(seed)
    fast = DGCNN(config)
    randomise(fast, seed)
    reference = ReferenceDGCNN(config)
    reference.load_state_dict(fast.state_dict())  # same names and shapes, both ways
    return fast.to(device, dtype), reference.to(device, dtype)


def clouds(batch: int = 2, n_points: int = 64, channels: int = 3, dtype: torch.dtype = torch.float64,
           seed: int = 1, device: str = "cpu") -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, n_points, channels, generator=generator, dtype=dtype).to(device)


def run_step(model: nn.Module, points: Tensor, train: bool,
             weights: Tensor) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Forward, then backward of sum(output * weights): (output, input grad, parameter grads)."""
    model.train(train)
    model.zero_grad(set_to_none=True)
    inputs = points.clone().requires_grad_()
    output = model(inputs)
    (output * weights).sum().backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    return output.detach(), inputs.grad, grads


def assert_close_scaled(actual: Tensor, expected: Tensor, rel: float) -> None:
    """|actual - expected| <= rel * max|expected| everywhere (a tolerance on the tensor's scale)."""
    scale = expected.abs().max().item()
    diff = (actual - expected).abs().max().item()
    assert diff <= rel * max(scale, 1e-12), f"max abs diff {diff:.3g} vs scale {scale:.3g}"


def test_batch_norm_scales_have_both_signs() -> None:
    fast, _ = make_pair()
    for layer in fast.edge_convs:
        assert (layer.bn.weight < 0).any() and (layer.bn.weight > 0).any()


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
def test_matches_reference_float64(train: bool) -> None:
    fast, reference = make_pair()
    points = clouds()
    weights = torch.randn(2, fast.global_dim, dtype=torch.float64)
    out_fast, grad_in_fast, grads_fast = run_step(fast, points, train, weights)
    out_ref, grad_in_ref, grads_ref = run_step(reference, points, train, weights)

    assert out_fast.shape == (2, 2 * SMALL.emb_dims)
    assert_close_scaled(out_fast, out_ref, 1e-10)
    assert_close_scaled(grad_in_fast, grad_in_ref, 1e-10)
    assert grads_fast.keys() == grads_ref.keys()
    for name in grads_ref:
        assert_close_scaled(grads_fast[name], grads_ref[name], 1e-10)
    # Train mode updates the running statistics exactly as BatchNorm does; eval leaves them.
    buffers_ref = dict(reference.named_buffers())
    for name, buffer in fast.named_buffers():
        assert torch.allclose(buffer, buffers_ref[name], rtol=1e-10, atol=1e-12), name


def test_local_features_match_reference() -> None:
    fast, reference = make_pair()
    points = clouds()
    global_fast, local_fast, centres = fast.train().forward_features(points)
    local_ref = reference.train().point_features(points)
    assert local_fast.shape == (2, SMALL.emb_dims, 64)
    assert_close_scaled(local_fast, local_ref, 1e-10)
    assert torch.equal(centres, points)
    # forward() is the global part of forward_features() (batch statistics are the same).
    assert_close_scaled(fast(points), global_fast, 1e-12)


def test_float32_as_accurate_as_textbook() -> None:
    """In float32 both models drift from the float64 result; the fast one no further."""
    exact, _ = make_pair(dtype=torch.float64)
    fast32, reference32 = make_pair(dtype=torch.float32)
    points = clouds(dtype=torch.float64)
    weights = torch.randn(2, exact.global_dim, dtype=torch.float64)
    out64, grad64, _ = run_step(exact, points, True, weights)
    out_fast, grad_fast, _ = run_step(fast32, points.float(), True, weights.float())
    out_ref, grad_ref, _ = run_step(reference32, points.float(), True, weights.float())
    assert_close_scaled(out_fast.double(), out64, 1e-5)
    assert_close_scaled(grad_fast.double(), grad64, 1e-4)
    assert_close_scaled(out_ref.double(), out64, 1e-4)  # the textbook's own float32 error, for scale


def test_edgeconv_state_dict_is_textbook() -> None:
    layer = EdgeConv(5, 7)
    assert {name: tuple(t.shape) for name, t in layer.state_dict().items()} == {
        "conv.weight": (7, 10, 1, 1), "bn.weight": (7,), "bn.bias": (7,), "bn.running_mean": (7,),
        "bn.running_var": (7,), "bn.num_batches_tracked": (),
    }


def test_knn_matches_official_and_includes_self() -> None:
    features = clouds(batch=2, n_points=50, channels=6)
    fast = _knn(features, 8)
    official = reference_knn(features.transpose(1, 2), 8)
    assert fast.shape == (2, 50, 8)
    assert torch.equal(fast.sort(-1)[0], official.sort(-1)[0])
    assert torch.equal(fast[..., 0], torch.arange(50).expand(2, -1))  # nearest is the point itself


def test_shapes_and_dims_default_config() -> None:
    model = DGCNN()
    assert (model.global_dim, model.local_dim) == (2048, 1024)
    assert [layer.out_channels for layer in model.edge_convs] == [64, 64, 128, 256]
    assert model.embed_conv.in_channels == 512


def test_normals_as_extra_input_channels() -> None:
    config = DGCNNConfig(k=4, emb_dims=16, in_channels=6, edge_channels=(8, 8))
    torch.manual_seed(0)
    model = DGCNN(config)
    points = clouds(batch=3, n_points=20, channels=6, dtype=torch.float32)
    global_feature, local, centres = model.forward_features(points)
    assert global_feature.shape == (3, 32) and local.shape == (3, 16, 20)
    assert torch.equal(centres, points[..., :3])


def test_farthest_point_sample_by_hand() -> None:
    line = torch.tensor([[0.0, 1.0, 2.0, 10.0]]).unsqueeze(-1).expand(-1, -1, 3)  # (1, 4, 3)
    # Start at 0; 10 is farthest from it; then 2 (distance 2 from 0) beats 1 (distance 1).
    assert _farthest_point_sample(line, 3).tolist() == [[0, 3, 2]]


def test_farthest_point_sample_distinct_spread_deterministic() -> None:
    xyz = clouds(batch=2, n_points=128, dtype=torch.float32)
    picked = _farthest_point_sample(xyz, 16)
    assert picked.shape == (2, 16) and picked.dtype == torch.long
    assert torch.equal(picked, _farthest_point_sample(xyz, 16))
    assert (picked[:, 0] == 0).all()
    for cloud, idx in zip(xyz, picked, strict=True):
        assert len(set(idx.tolist())) == 16
        chosen = cloud[idx]
        separation = torch.pdist(chosen).min()
        covering = torch.cdist(cloud, chosen).min(dim=1)[0].max()
        # Greedy FPS picks every point at the current covering radius, which never grows:
        # picked points are at least the final covering radius apart.
        assert separation >= covering - 1e-6


def test_local_centres_by_fps() -> None:
    config = DGCNNConfig(k=8, emb_dims=48, local_centres=16)
    fast, _ = make_pair(config)
    full = DGCNN(SMALL).double()
    full.load_state_dict(fast.state_dict())
    points = clouds()
    global_feature, local, centres = fast.forward_features(points)
    global_full, local_full, _ = full.forward_features(points)
    picked = _farthest_point_sample(points, 16)
    assert local.shape == (2, 48, 16) and centres.shape == (2, 16, 3)
    assert torch.equal(global_feature, global_full)
    for b in range(2):
        assert torch.equal(centres[b], points[b, picked[b]])
        assert torch.equal(local[b], local_full[b][:, picked[b]])


def test_gradients_flow_through_local_centres() -> None:
    config = DGCNNConfig(k=4, emb_dims=8, edge_channels=(8, 8), local_centres=5)
    model = DGCNN(config)
    points = clouds(batch=2, n_points=20, dtype=torch.float32).requires_grad_()
    _, local, centres = model.forward_features(points)
    (local.sum() + centres.sum()).backward()
    assert points.grad is not None and torch.isfinite(points.grad).all()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize(
    ("shape", "dtype", "match"),
    [
        ((2, 32), torch.float32, r"shape \(B, N, 3\)"),
        ((2, 32, 4), torch.float32, r"shape \(B, N, 3\), got \(2, 32, 4\)"),
        ((2, 32, 3), torch.int64, "floating-point"),
        ((2, 8, 3), torch.float32, "k=8 .* N=8"),
        ((0, 32, 3), torch.float32, "at least one cloud"),
    ],
)
def test_bad_points_raise(shape: tuple[int, ...], dtype: torch.dtype, match: str) -> None:
    model = DGCNN(DGCNNConfig(k=8, emb_dims=8, edge_channels=(8,)))
    with pytest.raises(ValueError, match=match):
        model(torch.zeros(shape, dtype=dtype))


def test_too_many_local_centres_raise() -> None:
    model = DGCNN(DGCNNConfig(k=4, emb_dims=8, edge_channels=(8,), local_centres=33))
    with pytest.raises(ValueError, match="local_centres=33 .* N=32"):
        model.forward_features(torch.zeros(1, 32, 3))
    with pytest.raises(ValueError, match="cannot sample 5 points from clouds of 4"):
        _farthest_point_sample(torch.zeros(1, 4, 3), 5)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "k must be at least 1, got 0"),
        ({"emb_dims": 0}, "emb_dims must be positive, got 0"),
        ({"in_channels": 2}, "in_channels must be at least 3 .* got 2"),
        ({"edge_channels": ()}, r"edge_channels .* got \(\)"),
        ({"edge_channels": (64, -1)}, r"got \(64, -1\)"),
        ({"local_centres": 0}, "local_centres must be positive or None, got 0"),
    ],
)
def test_bad_config_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DGCNNConfig(**kwargs)


def test_edge_channels_list_becomes_tuple() -> None:
    assert DGCNNConfig(edge_channels=[8, 16]).edge_channels == (8, 16)  # type: ignore[arg-type]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch.cuda.is_available() is False)")
def test_cuda_matches_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    # TF32 convolutions (cuDNN's default) would give the textbook model ~1e-3 errors.
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    for train, dtype in itertools.product((True, False), (torch.float64, torch.float32)):
        fast, reference = make_pair(dtype=dtype, device="cuda")
        points = clouds(dtype=dtype, device="cuda")
        weights = torch.randn(2, fast.global_dim, dtype=dtype, device="cuda")
        out_fast, grad_fast, grads_fast = run_step(fast, points, train, weights)
        out_ref, grad_ref, grads_ref = run_step(reference, points, train, weights)
        rel = 1e-10 if dtype == torch.float64 else 1e-3
        assert out_fast.device.type == "cuda"
        assert_close_scaled(out_fast, out_ref, rel)
        assert_close_scaled(grad_fast, grad_ref, rel)
        for name in grads_ref:
            assert_close_scaled(grads_fast[name], grads_ref[name], rel)
    _, local, centres = DGCNN(DGCNNConfig(k=4, emb_dims=8, local_centres=5)).cuda().forward_features(
        clouds(n_points=20, dtype=torch.float32, device="cuda"))
    assert local.shape == (2, 8, 5) and centres.device.type == "cuda"
