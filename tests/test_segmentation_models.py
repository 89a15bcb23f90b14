"""picat.models.segmentation: DGCNN part segmentation and PointNeXt scene segmentation (tiny sizes)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from picat.datasets.shapenetpart import CATEGORY_PARTS
from picat.models.dgcnn import DGCNN, NEGATIVE_SLOPE, DGCNNConfig, _knn
from picat.models.pointnext import PointNeXtConfig, PointNeXtEncoder, count_parameters
from picat.models.segmentation import (
    STEM_WEIGHT,
    DGCNNPartSegmenter,
    FeaturePropagation,
    PointNeXtSegmenter,
    segmentation_encoder,
    with_k,
)

TINY_DGCNN = DGCNNConfig(k=6, emb_dims=32, edge_channels=(8, 8, 16))
TINY_POINTNEXT = PointNeXtConfig(width=8, nsample=8)  # a tiny pre-trained classification encoder
TINY_SEG = {"strides": (1, 4, 4), "radius": 0.3}  # min_points 16: levels N, N/4, N/16


def cloud(batch: int, n_points: int, channels: int = 3, seed: int = 0) -> Tensor:
    return torch.rand(batch, n_points, channels, generator=torch.Generator().manual_seed(seed))


def randomise_norms(model: nn.Module, seed: int) -> None:
    """Random BN affine parameters and running statistics, so copied buffers are told apart."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                size = module.weight.shape
                module.weight.copy_(0.5 + torch.rand(size, generator=generator))
                module.bias.copy_(0.2 * torch.randn(size, generator=generator))
                module.running_mean.copy_(0.3 * torch.randn(size, generator=generator))
                module.running_var.copy_(0.5 + torch.rand(size, generator=generator))
                module.num_batches_tracked.fill_(7)


def part_segmenter(seed: int = 0, dropout: float = 0.5) -> DGCNNPartSegmenter:
    torch.manual_seed(seed)
    return DGCNNPartSegmenter(DGCNN(TINY_DGCNN), n_categories=len(CATEGORY_PARTS), n_parts=50, dropout=dropout)


# --------------------------------------------------------------------------------------------
# DGCNN
# --------------------------------------------------------------------------------------------

def old_dgcnn_global(model: DGCNN, points: Tensor) -> Tensor:
    """The global feature as DGCNN computed it before point_features existed (textbook layout)."""
    x, outputs = points, []
    for layer in model.edge_convs:
        x = layer(x, _knn(x, model.config.k))
        outputs.append(x)
    stacked = torch.cat(outputs, dim=-1).transpose(1, 2)  # (B, sum(edge), N)
    embedded = F.leaky_relu(model.embed_bn(model.embed_conv(stacked)), NEGATIVE_SLOPE)  # (B, E, N)
    return torch.cat([embedded.amax(dim=2), embedded.mean(dim=2)], dim=-1)


@pytest.mark.parametrize("train", [False, True])
def test_point_features_refactor_keeps_forward(train: bool) -> None:
    torch.manual_seed(1)
    model = DGCNN(TINY_DGCNN).double()
    randomise_norms(model, 2)
    model.train(train)
    points = cloud(2, 40, seed=3).double()
    expected = old_dgcnn_global(model, points)
    assert torch.allclose(model(points), expected, atol=1e-12)
    edge, embedded = model.point_features(points)
    assert edge.shape == (2, 40, sum(TINY_DGCNN.edge_channels)) and embedded.shape == (2, 40, TINY_DGCNN.emb_dims)
    pooled = torch.cat([embedded.amax(dim=1), embedded.mean(dim=1)], dim=-1)
    assert torch.allclose(pooled, expected, atol=1e-12)
    assert torch.allclose(model.forward_features(points)[1], embedded.transpose(1, 2), atol=1e-12)
    # The edge features are the EdgeConv outputs in layer order: the first block is layer 0's.
    first = model.edge_convs[0](points, _knn(points, model.config.k))
    assert torch.allclose(edge[..., :TINY_DGCNN.edge_channels[0]], first, atol=1e-12)


def test_part_segmenter_shape_and_gradients() -> None:
    model = part_segmenter(dropout=0.0)
    points, category = cloud(3, 48, seed=4), torch.tensor([0, 5, 15])
    logits = model(points, category)
    assert logits.shape == (3, 48, 50)
    target = torch.randint(50, (3, 48), generator=torch.Generator().manual_seed(5))
    F.cross_entropy(logits.reshape(-1, 50), target.reshape(-1)).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    assert any(name.startswith("backbone.edge_convs.0") for name, _ in model.named_parameters())


def test_part_segmenter_uses_category() -> None:
    model = part_segmenter().eval()
    randomise_norms(model, 6)
    points = cloud(1, 48, seed=7).expand(2, -1, -1)
    logits = model(points, torch.tensor([2, 9]))
    assert not torch.allclose(logits[0], logits[1])
    same = model(points, torch.tensor([4, 4]))
    assert torch.allclose(same[0], same[1])


def test_part_segmenter_matches_textbook_first_layer() -> None:
    """The split first layer equals one linear map over the repeated concatenation."""
    model = part_segmenter().double().eval()
    randomise_norms(model, 8)
    points, category = cloud(2, 32, seed=9).double(), torch.tensor([1, 3])
    edge, embedded = model.backbone.point_features(points)
    one_hot = F.one_hot(category, 16).double()
    cat_feature = F.leaky_relu(model.category_bn(model.category_embed(one_hot)), NEGATIVE_SLOPE)
    columns = torch.cat([embedded.amax(1, keepdim=True).expand(-1, 32, -1), cat_feature[:, None].expand(-1, 32, -1),
                         edge], dim=-1).reshape(64, -1)
    h = F.leaky_relu(model.first_bn(model.first(columns)), NEGATIVE_SLOPE)
    h = F.leaky_relu(model.second_bn(model.second(h)), NEGATIVE_SLOPE)
    h = F.leaky_relu(model.third_bn(model.third(h)), NEGATIVE_SLOPE)
    expected = model.classifier(h).view(2, 32, 50)
    assert torch.allclose(model(points, category), expected, atol=1e-10)


def test_with_k_keeps_weights() -> None:
    torch.manual_seed(10)
    backbone = DGCNN(TINY_DGCNN).eval()
    randomise_norms(backbone, 11)
    wider = with_k(backbone, 12)
    assert wider.config.k == 12 and backbone.config.k == TINY_DGCNN.k
    assert wider.config.emb_dims == TINY_DGCNN.emb_dims and not wider.training
    state, wider_state = backbone.state_dict(), wider.state_dict()
    assert state.keys() == wider_state.keys()
    assert all(torch.equal(state[name], wider_state[name]) for name in state)
    # Independent tensors: fine-tuning the copy leaves the original as it was.
    with torch.no_grad():
        wider.embed_conv.weight.add_(1.0)
    assert not torch.equal(backbone.embed_conv.weight, wider.embed_conv.weight)
    # Same as a model built with k = 12 and loaded with the weights.
    reference = DGCNN(DGCNNConfig(k=12, emb_dims=32, edge_channels=(8, 8, 16))).eval()
    reference.load_state_dict(state)
    points = cloud(2, 40, seed=12)
    assert torch.allclose(with_k(backbone, 12)(points), reference(points))
    with pytest.raises(ValueError, match="k must be"):
        with_k(backbone, 0)


@pytest.mark.parametrize(
    "points, category, match",
    [
        (torch.rand(2, 48, 3), torch.tensor([0]), "category must be a \\(2,\\)"),
        (torch.rand(2, 48, 3), torch.tensor([0.0, 1.0]), "int64"),
        (torch.rand(2, 48, 3), torch.tensor([0, 16]), "\\[0, 16\\)"),
        (torch.rand(2, 48, 3), torch.tensor([-1, 0]), "\\[0, 16\\)"),
        (torch.rand(2, 6, 3), torch.tensor([0, 1]), "k=6"),
        (torch.rand(2, 48, 6), torch.tensor([0, 1]), "\\(B, N, 3\\)"),
        (torch.rand(48, 3), torch.tensor([0]), "points must be"),
    ],
)
def test_part_segmenter_rejects_bad_input(points: Tensor, category: Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        part_segmenter()(points, category)


def test_part_segmenter_rejects_non_dgcnn() -> None:
    with pytest.raises(ValueError, match="DGCNN"):
        DGCNNPartSegmenter(nn.Linear(3, 3))  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# PointNeXt
# --------------------------------------------------------------------------------------------

def pretrained_source(seed: int = 20) -> PointNeXtEncoder:
    torch.manual_seed(seed)
    source = PointNeXtEncoder(TINY_POINTNEXT)
    randomise_norms(source, seed + 1)
    return source


def test_segmentation_encoder_transfers_exactly() -> None:
    source = pretrained_source()
    encoder, report = segmentation_encoder(source, seed=0, **TINY_SEG)
    cfg = encoder.config
    assert cfg.strides == (1, 4, 4) and not cfg.group_all and cfg.extra_channels == 3 and cfg.up_axis == "z"
    assert cfg.width == 8 and cfg.nsample == 8 and cfg.radius == 0.3 and cfg.radius_scaling == 2.0
    source_state, target_state = source.state_dict(), encoder.state_dict()
    assert report["counts"]["transferred"] == len(report["transferred"]) > 0
    for name in report["transferred"]:
        assert torch.equal(target_state[name], source_state[name]), name
    # Every target tensor is accounted for exactly once.
    partial = [entry["name"] for entry in report["partial"]]
    assert sorted(report["transferred"] + partial + report["fresh"]) == sorted(target_state)
    assert partial == [STEM_WEIGHT] and report["fresh"] == [] and report["mismatched"] == []
    # The stem: [x, y, z, height] columns from the source, colour columns fresh.
    (stem,) = report["partial"]
    assert stem["copied_columns"] == ["x", "y", "z", "height"]
    assert stem["fresh_columns"] == ["extra_0", "extra_1", "extra_2"] and stem["dropped_columns"] == []
    assert torch.equal(target_state[STEM_WEIGHT][:, :4], source_state[STEM_WEIGHT])
    # The colour columns are the seeded fresh initialisation of the same config.
    torch.manual_seed(0)
    fresh_stem = PointNeXtEncoder(cfg).state_dict()[STEM_WEIGHT]
    assert target_state[STEM_WEIGHT].shape == (8, 7)
    assert torch.equal(target_state[STEM_WEIGHT][:, 4:], fresh_stem[:, 4:])
    assert not torch.equal(target_state[STEM_WEIGHT][:, :4], fresh_stem[:, :4])
    # Stages beyond the segmentation strides and the group-all stage are unused.
    assert any(name.startswith("stages.5.") for name in report["unused"])
    assert not any(name.startswith(("stages.0.", "stages.1.", "stages.2.")) for name in report["unused"])
    # The source is untouched.
    assert torch.equal(source.state_dict()[STEM_WEIGHT], source_state[STEM_WEIGHT])


def test_segmentation_encoder_drops_normal_columns() -> None:
    torch.manual_seed(21)
    source = PointNeXtEncoder(PointNeXtConfig(width=8, nsample=8, use_normals=True))
    encoder, report = segmentation_encoder(source, seed=0, **TINY_SEG)
    (stem,) = report["partial"]
    assert stem["dropped_columns"] == ["nx", "ny", "nz"] and stem["copied_columns"] == ["x", "y", "z", "height"]
    assert not encoder.config.use_normals
    assert torch.equal(encoder.state_dict()[STEM_WEIGHT][:, :4], source.state_dict()[STEM_WEIGHT][:, :4])


def test_segmentation_encoder_from_scratch_is_seeded() -> None:
    before = torch.get_rng_state()
    first, report = segmentation_encoder(None, seed=3, **TINY_SEG)
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is left alone
    second, _ = segmentation_encoder(None, seed=3, **TINY_SEG)
    other, _ = segmentation_encoder(None, seed=4, **TINY_SEG)
    a, b, c = first.state_dict(), second.state_dict(), other.state_dict()
    assert all(torch.equal(a[name], b[name]) for name in a)
    assert not torch.equal(a[STEM_WEIGHT], c[STEM_WEIGHT])
    assert report["source"] == "scratch" and report["transferred"] == [] and sorted(report["fresh"]) == sorted(a)
    assert first.config.width == 32 and first.training


def test_pointnext_s_segmenter_size() -> None:
    """PointNeXt's cfgs/s3dis/pointnext-s.yaml reports 0.792 M parameters for 13 classes."""
    encoder, report = segmentation_encoder(None, seed=0)
    assert encoder.config.channels == (32, 64, 128, 256, 512) and encoder.config.min_points == 256
    assert encoder.config.radii == ((0.1,), (0.1,), (0.2,), (0.4,), (0.8,))
    assert round(count_parameters(PointNeXtSegmenter(encoder, 13)) / 1e6, 3) == 0.792
    assert report["config"]["strides"] == [1, 4, 4, 4, 4]


def test_segmenter_shape_and_gradients() -> None:
    encoder, _ = segmentation_encoder(pretrained_source(), seed=0, **TINY_SEG)
    model = PointNeXtSegmenter(encoder, 13, dropout=0.0)
    points, colours = cloud(2, 64, seed=30), cloud(2, 64, seed=31)
    logits = model(points, colours)
    assert logits.shape == (2, 64, 13)
    target = torch.randint(13, (2, 64), generator=torch.Generator().manual_seed(32))
    F.cross_entropy(logits.reshape(-1, 13), target.reshape(-1)).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name
    # The colour columns of the stem get gradient: colours are an input.
    assert model.encoder.stages[0][0].linear.weight.grad[:, 4:].abs().sum() > 0


def test_segmenter_at_min_points_and_colour_dependence() -> None:
    encoder, _ = segmentation_encoder(None, seed=1, **TINY_SEG)
    model = PointNeXtSegmenter(encoder, 5).eval()
    randomise_norms(model, 33)
    points = cloud(1, 16, seed=34)  # levels of 16, 4 and 1 points
    logits = model(points, cloud(1, 16, seed=35))
    assert logits.shape == (1, 16, 5) and torch.isfinite(logits).all()
    assert not torch.allclose(logits, model(points, cloud(1, 16, seed=36)))


def test_forward_stages_levels() -> None:
    encoder, _ = segmentation_encoder(pretrained_source(), seed=2, **TINY_SEG)  # width 8
    points = cloud(2, 64, seed=37)
    levels = encoder.forward_stages(points, cloud(2, 64, seed=38))
    assert [(tuple(xyz.shape), tuple(f.shape)) for xyz, f in levels] == [
        ((2, 64, 3), (2, 64, 8)), ((2, 16, 3), (2, 16, 16)), ((2, 4, 3), (2, 4, 32))]
    assert torch.equal(levels[0][0], points)
    for (fine, _), (coarse, _) in zip(levels[:-1], levels[1:], strict=True):  # every level is a subset of the finer one
        assert (coarse[:, :, None, :] == fine[:, None, :, :]).all(dim=-1).any(dim=-1).all()


def test_classification_encoder_stages_match_forward() -> None:
    """forward_stages on a classification encoder ends where the group-all stage starts."""
    encoder = pretrained_source().eval()
    points = cloud(2, 32, seed=39)
    xyz, features = encoder.forward_stages(points)[-1]
    global_feature, local, centres = encoder.forward_features(points)
    assert torch.equal(centres, xyz)
    assert torch.allclose(local.transpose(1, 2), encoder.stages[-1][0](xyz, features))
    assert torch.allclose(encoder(points), global_feature)


def test_feature_propagation_order() -> None:
    """Interpolation ignores the coarse points' order and follows the fine points' order."""
    torch.manual_seed(40)
    layer = FeaturePropagation(4, 6, 5).eval()
    randomise_norms(layer, 41)
    fine_xyz, fine_f = cloud(1, 20, seed=42), cloud(1, 20, 4, seed=43)
    coarse_xyz, coarse_f = fine_xyz[:, :7], cloud(1, 7, 6, seed=44)
    out = layer(fine_xyz, fine_f, coarse_xyz, coarse_f)
    coarse_order, fine_order = torch.randperm(7), torch.randperm(20)
    assert torch.allclose(out, layer(fine_xyz, fine_f, coarse_xyz[:, coarse_order], coarse_f[:, coarse_order]),
                          atol=1e-6)
    assert torch.allclose(out[:, fine_order],
                          layer(fine_xyz[:, fine_order], fine_f[:, fine_order], coarse_xyz, coarse_f), atol=1e-6)


def test_segmenter_rejects_bad_input() -> None:
    encoder, _ = segmentation_encoder(None, seed=0, **TINY_SEG)
    model = PointNeXtSegmenter(encoder, 13)
    with pytest.raises(ValueError, match="colours must have shape"):
        model(cloud(2, 64), cloud(2, 63))
    with pytest.raises(ValueError, match="extra must have shape \\(2, 64, 3\\)"):
        model(cloud(2, 64), cloud(2, 64, 4))
    with pytest.raises(ValueError, match="N >= 16"):
        model(cloud(2, 15), cloud(2, 15))
    with pytest.raises(ValueError, match="3 columns"):
        model(cloud(2, 64, 6), cloud(2, 64))
    with pytest.raises(ValueError, match="group-all"):
        PointNeXtSegmenter(PointNeXtEncoder(TINY_POINTNEXT), 13)
    with pytest.raises(ValueError, match="extra_channels = 0"):
        PointNeXtSegmenter(segmentation_encoder(None, extra_channels=0, **TINY_SEG)[0], 13)
    with pytest.raises(ValueError, match="takes no extra channels"):
        PointNeXtEncoder(TINY_POINTNEXT)(cloud(1, 32), cloud(1, 32))
    with pytest.raises(ValueError, match="strides"):
        segmentation_encoder(None, strides=(1, 4, 1))
    with pytest.raises(ValueError, match="source must be"):
        segmentation_encoder(nn.Linear(3, 3))  # type: ignore[arg-type]


def test_config_without_group_all() -> None:
    """The new fields default to the classification encoder and validate their values."""
    default = PointNeXtConfig()
    assert default.group_all and default.extra_channels == 0 and default.in_channels == 4
    assert PointNeXtConfig(extra_channels=3).input_names == ("x", "y", "z", "height", "extra_0", "extra_1", "extra_2")
    assert PointNeXtConfig(strides=(1, 4, 4), blocks=(1, 1, 2), group_all=False).min_points == 16
    with pytest.raises(ValueError, match="extra_channels"):
        PointNeXtConfig(extra_channels=-1)
    with pytest.raises(ValueError, match="strides"):
        PointNeXtConfig(strides=(2, 4), blocks=(1, 1), group_all=False)
