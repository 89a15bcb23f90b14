"""The Pic@Point model: a point backbone plus the four projection heads (paper figure 3).

The frozen 2D backbone is not part of this module: its features come from the encode cache
(or from :class:`picat.models.image.FrozenImageBackbone` on the fly), so only trainable
parameters live here.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from picat.models.heads import GlobalHead, LocalImageHead, LocalPointHead

VARIANTS = ("full", "no_local", "no_global", "no_pose", "normals")


@dataclass(frozen=True)
class VariantSettings:
    """What an ablation variant switches: which losses, the pose encoding, normals as input."""

    local_loss: bool
    global_loss: bool
    pose: bool
    normals: bool

    @classmethod
    def of(cls, variant: str) -> VariantSettings:
        if variant not in VARIANTS:
            raise ValueError(f"unknown pre-training variant {variant!r}; valid: {', '.join(VARIANTS)}")
        return cls(local_loss=variant != "no_local", global_loss=variant != "no_global",
                   pose=variant != "no_pose", normals=variant == "normals")


class PicAtPoint(nn.Module):
    """Point backbone + projection heads into the shared latent space.

    Args:
        backbone: a point backbone with ``forward_features(points) -> (global (B, Dg),
            local (B, Dl, L), centres (B, L, 3))`` and attributes ``global_dim``, ``local_dim``.
            Backbones that pick points by farthest point sampling (PointNeXt, DGCNN with local
            centres) also take precomputed picks, ``forward_features(points, samples=...)``
            (see :mod:`picat.pretrain.samples`).
        image_dim: channels C of the frozen image features (local map and global vector).
        variant: which heads exist (see :class:`VariantSettings`).
        latent_dim: d, the shared latent dimension (512 in the paper).
        pose_dim: size of the pose encoding (64 in the paper).
    """

    def __init__(self, backbone: nn.Module, image_dim: int, variant: str = "full", latent_dim: int = 512,
                 pose_dim: int = 64) -> None:
        super().__init__()
        self.settings = VariantSettings.of(variant)
        self.backbone = backbone
        if self.settings.global_loss:
            self.point_global = GlobalHead(backbone.global_dim, latent_dim)
            self.image_global = GlobalHead(image_dim, latent_dim)
        if self.settings.local_loss:
            self.point_local = LocalPointHead(backbone.local_dim, latent_dim,
                                              pose_dim=pose_dim if self.settings.pose else None)
            self.image_local = LocalImageHead(image_dim, latent_dim)

    def image_parameters(self) -> list[nn.Parameter]:
        """Parameters of the image heads (their own learning rate, 5e-5 in the paper)."""
        heads = [getattr(self, name) for name in ("image_global", "image_local") if hasattr(self, name)]
        return [p for head in heads for p in head.parameters()]

    def point_parameters(self) -> list[nn.Parameter]:
        """Backbone and point heads (learning rate 1e-3 in the paper)."""
        image = {id(p) for p in self.image_parameters()}
        return [p for p in self.parameters() if id(p) not in image]

    def forward(self, points: Tensor, view: Tensor, image_local: Tensor, image_global: Tensor,
                samples: Tensor | None = None) -> dict[str, Tensor]:
        """Embed one batch.

        Args:
            points: (B, N, 3 or 6) clouds (already augmented). view: (B, 4, 4) M_view of
                each object's view (moved along with the augmentation).
            image_local: (B, C, g, g) frozen image feature maps. image_global: (B, C).
            samples: (B, S) integer farthest point samples of the clouds (the backbone's
                ``sample_indices``, possibly of the clouds before their rotation), or None to
                let the backbone run FPS.

        Returns:
            z_global, q_global (B, d) when the global loss is on; z_local (B, L, d),
            q_local (B, g*g, d) (row-major cells) and centres (B, L, 3) when the local loss is on.
        """
        if samples is None:  # the backbone's own FPS; backbones without FPS need not know the keyword
            global_features, local_features, centres = self.backbone.forward_features(points)
        else:
            global_features, local_features, centres = self.backbone.forward_features(points, samples=samples)
        out: dict[str, Tensor] = {}
        if self.settings.global_loss:
            out["z_global"] = self.point_global(global_features)
            out["q_global"] = self.image_global(image_global)
        if self.settings.local_loss:
            out["z_local"] = self.point_local(local_features, view).transpose(1, 2)
            out["q_local"] = self.image_local(image_local).flatten(2).transpose(1, 2)
            out["centres"] = centres
        return out
