import pytest
import torch

from picat.models.heads import GlobalHead, LocalImageHead, LocalPointHead, PoseEncoder
from picat.pretrain.model import PicAtPoint, VariantSettings


def test_heads_shapes_and_unit_norm():
    torch.manual_seed(0)
    z = GlobalHead(32, 16)(torch.randn(4, 32))
    assert z.shape == (4, 16) and torch.allclose(z.norm(dim=1), torch.ones(4))
    local = LocalPointHead(32, 16, pose_dim=8)(torch.randn(4, 32, 10), torch.randn(4, 4, 4))
    assert local.shape == (4, 16, 10) and torch.allclose(local.norm(dim=1), torch.ones(4, 10))
    image = LocalImageHead(24, 16)(torch.randn(4, 24, 7, 7))
    assert image.shape == (4, 16, 7, 7) and torch.allclose(image.norm(dim=1), torch.ones(4, 7, 7))
    assert PoseEncoder(64)(torch.randn(3, 4, 4)).shape == (3, 64)


def test_pose_encoding_conditions_the_local_head():
    torch.manual_seed(0)
    features, view = torch.randn(2, 32, 5), torch.randn(2, 4, 4)
    posed = LocalPointHead(32, 16, pose_dim=8).eval()
    assert not torch.allclose(posed(features, view), posed(features, view + 1.0))
    # The pose enters after the first conv: the same for every local embedding of a cloud.
    assert posed.second.in_channels == 16 + 8
    plain = LocalPointHead(32, 16, pose_dim=None).eval()
    assert torch.equal(plain(features, view), plain(features, view + 1.0))
    with pytest.raises(ValueError, match="view matrices"):
        posed(features)


def test_variants():
    assert VariantSettings.of("no_pose") == VariantSettings(local_loss=True, global_loss=True, pose=False,
                                                            normals=False)
    assert VariantSettings.of("normals").normals
    with pytest.raises(ValueError, match="unknown pre-training variant 'fancy'"):
        VariantSettings.of("fancy")


def test_image_heads_have_their_own_parameter_group():
    class Backbone(torch.nn.Module):
        global_dim = local_dim = 8

        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3, 8)

    model = PicAtPoint(Backbone(), image_dim=8, latent_dim=4, pose_dim=2)
    image, point = model.image_parameters(), model.point_parameters()
    assert len(image) + len(point) == len(list(model.parameters()))
    assert {id(p) for p in image}.isdisjoint(id(p) for p in point)
    assert {id(p) for p in model.backbone.parameters()} <= {id(p) for p in point}
    assert not hasattr(PicAtPoint(Backbone(), 8, "no_local", 4), "point_local")
