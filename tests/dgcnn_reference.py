"""Textbook DGCNN, written the straightforward way, to check and time picat's fast one against.

It builds the (B, 2C, N, k) edge tensor ``[x_j - x_i, x_i]`` and runs Conv2d -> BatchNorm2d ->
LeakyReLU -> max over neighbours on it, in the channels-first layout of the official code.
Parameter names match :class:`picat.models.dgcnn.DGCNN`, so state_dicts load either way.
Shared by tests/test_dgcnn.py and benchmarks/dgcnn_edgeconv.py.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from picat.models.dgcnn import DGCNNConfig


def knn(x: Tensor, k: int) -> Tensor:
    """(B, C, N) features -> (B, N, k) indices of the nearest neighbours (self included)."""
    inner = -2 * torch.matmul(x.transpose(2, 1), x)
    xx = torch.sum(x**2, dim=1, keepdim=True)
    neg_sq_dist = -xx - inner - xx.transpose(2, 1)
    return neg_sq_dist.topk(k=k, dim=-1)[1]


def get_graph_feature(x: Tensor, k: int) -> Tensor:
    """(B, C, N) features -> (B, 2C, N, k) edge features [x_j - x_i, x_i]."""
    batch, channels, n_points = x.shape
    idx = knn(x, k) + torch.arange(batch, device=x.device).view(-1, 1, 1) * n_points
    points = x.transpose(2, 1).contiguous()  # (B, N, C)
    neighbours = points.view(batch * n_points, channels)[idx.view(-1)].view(batch, n_points, k, channels)
    centres = points.view(batch, n_points, 1, channels).expand(-1, -1, k, -1)
    return torch.cat((neighbours - centres, centres), dim=3).permute(0, 3, 1, 2).contiguous()


class ReferenceEdgeConv(nn.Module):
    """Conv2d(2C, O, 1, bias=False) -> BatchNorm2d -> LeakyReLU(0.2) -> max over k."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * in_channels, out_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: Tensor, k: int) -> Tensor:
        """(B, C, N) -> (B, O, N)."""
        edges = F.leaky_relu(self.bn(self.conv(get_graph_feature(x, k))), 0.2)
        return edges.max(dim=-1)[0]


class ReferenceDGCNN(nn.Module):
    """The official DGCNN backbone: (B, N, C_in) -> (B, 2 * emb_dims), plus per-point features."""

    def __init__(self, config: DGCNNConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else DGCNNConfig()
        widths = (self.config.in_channels, *self.config.edge_channels)
        self.edge_convs = nn.ModuleList(ReferenceEdgeConv(i, o) for i, o in zip(widths[:-1], widths[1:], strict=True))
        self.embed_conv = nn.Conv1d(sum(self.config.edge_channels), self.config.emb_dims, kernel_size=1, bias=False)
        self.embed_bn = nn.BatchNorm1d(self.config.emb_dims)

    def point_features(self, points: Tensor) -> Tensor:
        """(B, N, C_in) -> (B, emb_dims, N)."""
        x = points.transpose(1, 2)
        outputs = []
        for layer in self.edge_convs:
            x = layer(x, self.config.k)
            outputs.append(x)
        return F.leaky_relu(self.embed_bn(self.embed_conv(torch.cat(outputs, dim=1))), 0.2)

    def forward(self, points: Tensor) -> Tensor:
        """(B, N, C_in) -> (B, 2 * emb_dims)."""
        local = self.point_features(points)
        return torch.cat([F.adaptive_max_pool1d(local, 1), F.adaptive_avg_pool1d(local, 1)], dim=1).flatten(1)
