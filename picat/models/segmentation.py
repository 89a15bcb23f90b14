"""Segmentation networks: DGCNN part segmentation (Table 4) and PointNeXt-S scene segmentation (Table 5).

DGCNN part segmentation follows the usual PyTorch version (antao97/dgcnn.pytorch) on top of
:class:`picat.models.dgcnn.DGCNN`: per-point features = the concatenated EdgeConv outputs;
global feature = max over points of the embedding conv's output; the shape's category as a
one-hot -> 1x1 conv 16 -> 64 + BN + LeakyReLU(0.2); [global, category, per-point] per point
-> shared MLP 256 -> 256 -> 128 (BN, LeakyReLU 0.2, dropout after the first two) -> part logits.

PointNeXt-S scene segmentation follows PointNeXt's ``cfgs/s3dis/pointnext-s.yaml``: encoder
blocks [1]*5, strides [1, 4, 4, 4, 4] (no group-all stage), width 32 (32 .. 512 channels),
radius 0.1 doubling per down-sampling stage (OpenPoints' default ``radius_scaling`` 2),
32 neighbours, 2-layer residual set abstractions; decoder = PointNeXtDecoder (per level, 3-NN
inverse-distance interpolation of the coarser features, concatenated with the finer level's
skip features, then 2 x (linear, BN, ReLU) to the finer level's width); head = SegHead
(linear, BN, ReLU, dropout 0.5, linear).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from picat.models.dgcnn import DGCNN, NEGATIVE_SLOPE
from picat.models.ops import gather_points, knn
from picat.models.pointnext import PointNeXtConfig, PointNeXtEncoder, mlp

__all__ = ["DGCNNPartSegmenter", "with_k", "FeaturePropagation", "PointNeXtSegmenter", "segmentation_encoder",
           "STEM_WEIGHT"]

STEM_WEIGHT = "stages.0.0.linear.weight"  # the stem's (width, in_channels) linear map
_INTERPOLATION_NEIGHBOURS = 3
_INVERSE_DISTANCE_EPS = 1e-8  # as OpenPoints' three_interpolation: coincident points get ~all the weight


# --------------------------------------------------------------------------------------------
# DGCNN part segmentation
# --------------------------------------------------------------------------------------------

def with_k(backbone: DGCNN, k: int) -> DGCNN:
    """A copy of ``backbone`` with the same weights, buffers and mode, building k-NN graphs of k.

    k is not a weight: the part-segmentation protocol (k = 40 at 2048 points) can use a
    backbone pre-trained with k = 20 at 1024 points. ``backbone`` itself is left unchanged.
    """
    if not isinstance(backbone, DGCNN):
        raise ValueError(f"with_k needs a picat.models.dgcnn.DGCNN, got {type(backbone).__name__}")
    return backbone.with_k(k)


class DGCNNPartSegmenter(nn.Module):
    """DGCNN part segmentation: points (B, N, C_in) + category (B,) -> part logits (B, N, n_parts).

    Deviations from antao97/dgcnn.pytorch, the PyTorch reference: no spatial transform net
    (the pre-trained Pic@Point backbone has none, so its weights could not be reused with
    one); the EdgeConv widths and the embedding width are the backbone's (64/64/128/256 and
    emb_dims in picat, where antao's part-seg net has 64/64/64 and 1024), so the shared MLP's
    first layer takes emb_dims + 64 + sum(edge_channels) channels.

    The first layer of the shared MLP is a 1x1 conv over the per-point concatenation
    [global, category, edge]; it is evaluated as W_g g + W_c c (once per cloud) + W_e e (per
    point), the same function as the textbook conv without materialising the repeated
    per-cloud columns.

    As in antao's code the category features are batch-normalised over the B clouds, so
    training needs batches of at least 2 clouds (drop a last batch of 1).

    Attributes:
        backbone: the DGCNN (its weights are fine-tuned with the rest).
        n_categories, n_parts: sizes of the category one-hot and of the logits.
    """

    def __init__(self, backbone: DGCNN, n_categories: int = 16, n_parts: int = 50, dropout: float = 0.5) -> None:
        super().__init__()
        if not isinstance(backbone, DGCNN):
            raise ValueError(f"backbone must be a picat.models.dgcnn.DGCNN (load_backbone(..., local=False)), "
                             f"got {type(backbone).__name__}")
        if n_categories < 1 or n_parts < 1:
            raise ValueError(f"n_categories and n_parts must be positive, got {n_categories} and {n_parts}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.backbone = backbone
        self.n_categories, self.n_parts = n_categories, n_parts
        cfg = backbone.config
        self.global_dim, self.edge_dim, self.category_dim = cfg.emb_dims, sum(cfg.edge_channels), 64
        # Category one-hot -> 64 (antao's conv7 + bn7 + LeakyReLU).
        self.category_embed = nn.Linear(n_categories, self.category_dim, bias=False)
        self.category_bn = nn.BatchNorm1d(self.category_dim)
        # Shared MLP over [global, category, edge] per point (antao's conv8 .. conv11).
        in_dim = self.global_dim + self.category_dim + self.edge_dim
        self.first = nn.Linear(in_dim, 256, bias=False)  # columns in the order [global, category, edge]
        self.first_bn = nn.BatchNorm1d(256)
        self.dropout1 = nn.Dropout(dropout)
        self.second = nn.Linear(256, 256, bias=False)
        self.second_bn = nn.BatchNorm1d(256)
        self.dropout2 = nn.Dropout(dropout)
        self.third = nn.Linear(256, 128, bias=False)
        self.third_bn = nn.BatchNorm1d(128)
        self.classifier = nn.Linear(128, n_parts, bias=False)  # antao's conv11 has no bias

    def forward(self, points: Tensor, category: Tensor) -> Tensor:
        """Part logits.

        Args:
            points: (B, N, C_in) clouds, xyz in the first 3 channels; N > backbone k.
            category: (B,) int64 global category index in [0, n_categories).

        Returns:
            (B, N, n_parts) logits over all parts (restricting them to the category's parts
            is the evaluation's business).
        """
        if not isinstance(points, Tensor) or points.dim() != 3:
            shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
            raise ValueError(f"points must be a (B, N, C_in) tensor, got {shape}")
        batch, n_points = points.shape[:2]
        if not isinstance(category, Tensor) or category.shape != (batch,):
            shape = tuple(category.shape) if isinstance(category, Tensor) else type(category).__name__
            raise ValueError(f"category must be a ({batch},) tensor matching points {tuple(points.shape)}, got {shape}")
        if category.dtype != torch.long:
            raise ValueError(f"category must be int64 category indices, got {category.dtype}")
        in_range = (category >= 0) & (category < self.n_categories)
        if category.device.type != "cuda":
            if batch and not bool(in_range.all()):
                raise ValueError(f"category indices must lie in [0, {self.n_categories}), got "
                                 f"[{int(category.min())}, {int(category.max())}]")
        else:  # checked on the device: a host read here would stall the GPU in every step
            torch._assert_async(in_range.all(), f"category indices must lie in [0, {self.n_categories})")

        edge, embedded = self.backbone.point_features(points)  # (B, N, E_edge), (B, N, E)
        global_feature = embedded.amax(dim=1)  # (B, E)
        # A comparison, not F.one_hot, which reads the indices' range on the host.
        one_hot = (category[:, None] == torch.arange(self.n_categories, device=category.device)).to(points.dtype)
        category_feature = F.leaky_relu(self.category_bn(self.category_embed(one_hot)), NEGATIVE_SLOPE)  # (B, 64)

        weight = self.first.weight
        w_cloud, w_edge = (weight[:, :self.global_dim + self.category_dim],
                           weight[:, self.global_dim + self.category_dim:])
        per_cloud = F.linear(torch.cat([global_feature, category_feature], dim=-1), w_cloud)  # (B, 256)
        h = F.linear(edge, w_edge) + per_cloud[:, None, :]  # (B, N, 256)
        h = h.reshape(batch * n_points, -1)
        h = self.dropout1(F.leaky_relu(self.first_bn(h), NEGATIVE_SLOPE))
        h = self.dropout2(F.leaky_relu(self.second_bn(self.second(h)), NEGATIVE_SLOPE))
        h = F.leaky_relu(self.third_bn(self.third(h)), NEGATIVE_SLOPE)
        return self.classifier(h).view(batch, n_points, self.n_parts)


# --------------------------------------------------------------------------------------------
# PointNeXt-S scene segmentation
# --------------------------------------------------------------------------------------------

class FeaturePropagation(nn.Module):
    """One decoder level: interpolate coarse features onto the finer points, fuse with the skip.

    Each fine point takes the inverse-distance weighted mean of its 3 nearest coarse points'
    features (fewer when the coarse level has fewer points), concatenated after the fine
    level's own (skip) features, then a shared MLP (linear, BN, ReLU) x ``layers``.
    """

    def __init__(self, skip_channels: int, coarse_channels: int, out_channels: int, layers: int = 2) -> None:
        super().__init__()
        self.skip_channels, self.coarse_channels = skip_channels, coarse_channels
        self.mlp = mlp([skip_channels + coarse_channels] + [out_channels] * layers, last_act=True)

    def forward(self, fine_xyz: Tensor, fine_features: Tensor, coarse_xyz: Tensor, coarse_features: Tensor) -> Tensor:
        """(B, Nf, 3), (B, Nf, Cs), (B, Nc, 3), (B, Nc, Cc) -> (B, Nf, out_channels)."""
        k = min(_INTERPOLATION_NEIGHBOURS, coarse_xyz.shape[1])
        dist, idx = knn(k, coarse_xyz, fine_xyz)  # (B, Nf, k) each
        weights = 1.0 / (dist + _INVERSE_DISTANCE_EPS)
        weights = (weights / weights.sum(dim=-1, keepdim=True)).to(coarse_features.dtype)
        interpolated = (gather_points(coarse_features, idx) * weights[..., None]).sum(dim=2)  # (B, Nf, Cc)
        h = torch.cat([fine_features, interpolated], dim=-1)
        shape = h.shape
        return self.mlp(h.reshape(-1, shape[-1])).reshape(*shape[:-1], -1)


class PointNeXtSegmenter(nn.Module):
    """PointNeXt encoder-decoder: points (B, N, 3) + colours (B, N, 3) -> logits (B, N, n_classes).

    The encoder must be configured for segmentation (``group_all=False``, ``extra_channels`` =
    colour channels); build it with :func:`segmentation_encoder`. Its input features are
    [xyz, height along the up axis, colours]. Not invariant to the order of the input points:
    farthest point sampling starts at point 0 and ball query keeps the first K neighbours in
    index order, as in PointNeXt.
    """

    def __init__(self, encoder: PointNeXtEncoder, n_classes: int, dropout: float = 0.5,
                 decoder_layers: int = 2) -> None:
        super().__init__()
        if not isinstance(encoder, PointNeXtEncoder):
            raise ValueError(f"encoder must be a PointNeXtEncoder, got {type(encoder).__name__}")
        cfg = encoder.config
        if cfg.group_all:
            raise ValueError("encoder has a group-all stage (a classification config); build the segmentation "
                             "encoder with segmentation_encoder()")
        if cfg.extra_channels < 1:
            raise ValueError("encoder takes no colour channels (config.extra_channels = 0); build it with "
                             "segmentation_encoder(extra_channels=3)")
        if n_classes < 1:
            raise ValueError(f"n_classes must be positive, got {n_classes}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.encoder, self.n_classes = encoder, n_classes
        channels = cfg.channels
        # decoder[i] brings level i+1 (already decoded to channels[i+1]) down onto level i.
        self.decoder = nn.ModuleList(
            FeaturePropagation(channels[i], channels[i + 1], channels[i], decoder_layers)
            for i in range(len(channels) - 1)
        )
        width = channels[0]
        self.head = nn.Sequential(
            nn.Linear(width, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True),
            *([nn.Dropout(dropout)] if dropout > 0 else []),
            nn.Linear(width, n_classes),
        )

    def forward(self, points: Tensor, colours: Tensor) -> Tensor:
        """Per-point class logits.

        Args:
            points: (B, N, 3) xyz in metres, N >= ``encoder.config.min_points``.
            colours: (B, N, extra_channels) normalised colours.

        Returns:
            (B, N, n_classes) logits, in the input order.
        """
        if not isinstance(colours, Tensor) or not isinstance(points, Tensor) or colours.shape[:-1] != points.shape[:-1]:
            got = tuple(colours.shape) if isinstance(colours, Tensor) else type(colours).__name__
            want = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
            raise ValueError(f"colours must have shape (B, N, {self.encoder.config.extra_channels}) matching points "
                             f"{want}, got {got}")
        levels = self.encoder.forward_stages(points, colours)
        _, features = levels[-1]
        for i in range(len(levels) - 2, -1, -1):
            fine_xyz, fine_features = levels[i]
            features = self.decoder[i](fine_xyz, fine_features, levels[i + 1][0], features)
        batch, n_points, width = features.shape
        return self.head(features.reshape(-1, width)).view(batch, n_points, self.n_classes)


def _seg_blocks(config: PointNeXtConfig, n_stages: int) -> tuple[int, ...]:
    """The source's blocks per down-sampling stage, cut or padded with 1 to ``n_stages``."""
    blocks = config.blocks[:-1] if config.group_all else config.blocks
    return tuple(blocks[:n_stages]) + (1,) * max(0, n_stages - len(blocks))


def segmentation_encoder(source: PointNeXtEncoder | None, *, extra_channels: int = 3, up_axis: str = "z",
                         radius: float = 0.1, strides: Sequence[int] = (1, 4, 4, 4, 4), radius_scaling: float = 2.0,
                         seed: int | None = None) -> tuple[PointNeXtEncoder, dict[str, Any]]:
    """The segmentation encoder, from scratch or initialised from a pre-trained encoder.

    The config is ``source.config`` (PointNeXt-S's defaults when ``source`` is None) with
    ``strides``, ``radius``, ``radius_scaling``, ``up_axis``, ``extra_channels`` overridden,
    no group-all stage and no normals (S3DIS has none). Widths, neighbours, set-abstraction
    layers and blocks per stage come from the source, so every set abstraction keeps its
    parameter shapes. Every source tensor (parameters and BN buffers) whose name and shape
    match is copied; the stem's first linear map gets the source's columns for the input
    channels both share, matched by name (x, y, z, height), and keeps its fresh
    initialisation for the others (the colours); the source's group-all stage is unused.

    Args:
        source: a pre-trained encoder, or None to train from scratch.
        extra_channels: colour channels appended to the input features.
        up_axis: the up axis of the scenes (S3DIS: "z"), for the height feature.
        radius, radius_scaling, strides: the segmentation encoder's grouping (PointNeXt's S3DIS
            values by default).
        seed: seeds the fresh initialisation (global RNG state is left untouched); None uses
            the global RNG.

    Returns:
        (encoder, report). The encoder is in train mode, on the CPU in float32. The report is
        a JSON-ready dict: ``source`` ("scratch" or "pretrained"), ``config`` and
        ``source_config`` (dicts), ``transferred`` (names), ``partial`` (one entry per
        partially copied tensor: name, copied_columns, fresh_columns, dropped_columns),
        ``fresh`` (names left at their initialisation), ``mismatched`` (names present in both
        with other shapes, left fresh: name, shape, source_shape), ``unused`` (source names not
        used) and ``counts`` of each.
    """
    if source is not None and not isinstance(source, PointNeXtEncoder):
        raise ValueError(f"source must be a PointNeXtEncoder or None, got {type(source).__name__}")
    base = source.config if source is not None else PointNeXtConfig()
    strides = tuple(strides)
    config = dataclasses.replace(base, strides=strides, blocks=_seg_blocks(base, len(strides)), radius=radius,
                                 radius_scaling=radius_scaling, up_axis=up_axis, use_normals=False,
                                 group_all=False, extra_channels=extra_channels)  # validates the overrides
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        encoder = PointNeXtEncoder(config)
    report: dict[str, Any] = {"source": "scratch" if source is None else "pretrained", "config": config.to_dict(),
                              "source_config": None if source is None else base.to_dict()}
    target_state = encoder.state_dict()
    if source is None:
        report.update(transferred=[], partial=[], fresh=sorted(target_state), mismatched=[], unused=[])
    else:
        report.update(_transfer(source, encoder))
    report["counts"] = {key: len(report[key]) for key in ("transferred", "partial", "fresh", "mismatched", "unused")}
    return encoder.train(), report


@torch.no_grad()
def _transfer(source: PointNeXtEncoder, target: PointNeXtEncoder) -> dict[str, list]:
    """Copy matching tensors from ``source`` into ``target`` in place; the report's lists."""
    source_state = {name: tensor.detach() for name, tensor in source.state_dict().items()}
    target_state = target.state_dict()  # references to the target's own tensors
    transferred, partial, fresh, mismatched = [], [], [], []
    for name, tensor in target_state.items():
        if name not in source_state:
            fresh.append(name)
            continue
        given = source_state[name]
        # The stem's columns are matched by input channel name whenever the layouts differ:
        # equal shapes alone could pair a source's normal columns with the target's colours.
        if name == STEM_WEIGHT and source.config.input_names != target.config.input_names:
            partial.append(_transfer_stem(given, tensor, source.config.input_names, target.config.input_names, name))
        elif given.shape == tensor.shape:
            tensor.copy_(given.to(tensor.dtype))
            transferred.append(name)
        else:
            mismatched.append({"name": name, "shape": list(tensor.shape), "source_shape": list(given.shape)})
            fresh.append(name)
    unused = sorted(set(source_state) - set(target_state))
    return {"transferred": transferred, "partial": partial, "fresh": fresh, "mismatched": mismatched, "unused": unused}


def _transfer_stem(given: Tensor, weight: Tensor, source_names: Sequence[str], target_names: Sequence[str],
                   name: str) -> dict[str, Any]:
    """Copy the stem weight's (out, in) columns of the input channels both encoders share."""
    if given.shape[0] != weight.shape[0]:
        raise ValueError(f"{name}: source has {given.shape[0]} output channels, target {weight.shape[0]}")
    source_column = {channel: i for i, channel in enumerate(source_names)}
    copied, fresh_columns = [], []
    for j, channel in enumerate(target_names):
        if channel in source_column:
            weight[:, j] = given[:, source_column[channel]].to(weight.dtype)
            copied.append(channel)
        else:
            fresh_columns.append(channel)
    dropped = [channel for channel in source_names if channel not in set(target_names)]
    return {"name": name, "copied_columns": copied, "fresh_columns": fresh_columns, "dropped_columns": dropped}
