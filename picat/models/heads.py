"""Pic@Point's projection heads (paper section 3.2) and the pose encoding.

Every head maps into the shared latent space of dimension d (512 in the paper) and
L2-normalises its output. Hidden widths are not given by the paper; they default to d.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

POSE_INPUTS = 12  # the rotation and translation rows of M_view (its last row is constant)


class GlobalHead(nn.Module):
    """Two-layer MLP: (B, in_dim) -> (B, d), L2-normalised."""

    def __init__(self, in_dim: int, out_dim: int = 512, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden_dim = hidden_dim or out_dim
        self.layers = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, out_dim),
        )

    def forward(self, features: Tensor) -> Tensor:
        return F.normalize(self.layers(features), dim=-1)


class PoseEncoder(nn.Module):
    """Two-layer MLP of the camera's M_view: (B, 4, 4) -> (B, pose_dim) (64 in the paper)."""

    def __init__(self, pose_dim: int = 64) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(POSE_INPUTS, pose_dim), nn.ReLU(inplace=True),
                                    nn.Linear(pose_dim, pose_dim))

    def forward(self, view: Tensor) -> Tensor:
        return self.layers(view[:, :3, :].reshape(len(view), POSE_INPUTS))


class LocalPointHead(nn.Module):
    """1x1 Conv1d head for local point features, conditioned on the camera pose.

    (B, in_dim, L) -> conv -> BN -> ReLU -> [concat pose (B, pose_dim, L)] -> conv -> (B, d, L),
    L2-normalised over channels. Without a pose encoder (the no_pose ablation) the second
    conv sees the first one's output alone.
    """

    def __init__(self, in_dim: int, out_dim: int = 512, hidden_dim: int | None = None,
                 pose_dim: int | None = 64) -> None:
        super().__init__()
        hidden_dim = hidden_dim or out_dim
        self.first = nn.Sequential(nn.Conv1d(in_dim, hidden_dim, 1, bias=False), nn.BatchNorm1d(hidden_dim),
                                   nn.ReLU(inplace=True))
        self.pose = PoseEncoder(pose_dim) if pose_dim else None
        self.second = nn.Conv1d(hidden_dim + (pose_dim or 0), out_dim, 1)

    def forward(self, features: Tensor, view: Tensor | None = None) -> Tensor:
        hidden = self.first(features)
        if self.pose is not None:
            if view is None:
                raise ValueError("this head encodes the camera pose: pass the view matrices (B, 4, 4)")
            pose = self.pose(view)[:, :, None].expand(-1, -1, hidden.shape[-1])
            hidden = torch.cat([hidden, pose], dim=1)
        return F.normalize(self.second(hidden), dim=1)


class LocalImageHead(nn.Module):
    """1x1 Conv2d head for the image feature map: (B, in_dim, g, g) -> (B, d, g, g), L2-normalised."""

    def __init__(self, in_dim: int, out_dim: int = 512, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden_dim = hidden_dim or out_dim
        self.layers = nn.Sequential(
            nn.Conv2d(in_dim, hidden_dim, 1, bias=False), nn.BatchNorm2d(hidden_dim), nn.ReLU(inplace=True),
            nn.Conv2d(hidden_dim, out_dim, 1),
        )

    def forward(self, features: Tensor) -> Tensor:
        return F.normalize(self.layers(features), dim=1)
