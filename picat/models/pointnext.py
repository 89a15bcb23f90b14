"""PointNeXt-S (Qian et al., 2022) for classification, in plain PyTorch (runs on CPU and CUDA).

Architecture (the official ``pointnext-s.yaml`` classification config: blocks [1]*6,
strides [1, 2, 2, 2, 2, 1], width 32, radius 0.15 x1.5 per stage, 32 neighbours,
sa_layers 2 with residual set abstraction, in-channels 4 = xyz + height):

==========  ===========================================  ===========  =========
stage       operation                                    points       channels
==========  ===========================================  ===========  =========
0 (stem)    per-point linear, no norm or activation      N            32
1..4        set abstraction: FPS 1/2, ball query r_i,    N/2 .. N/16  64 .. 512
            [dp/r, f_j] -> 2 x (linear, BN) -> max over
            neighbours, + linear skip of the centre's
            feature, ReLU
5           group-all: [xyz, f] -> 2 x (linear, BN,      N/16 -> 1    512
            ReLU) per point -> max over all points
==========  ===========================================  ===========  =========

radii r_1..r_4 = 0.15, 0.225, 0.3375, 0.50625 (the official list also carries 0.759 for the
last stage, where it is unused). Stages may hold extra InvResMLP blocks (``blocks`` > 1, as
in PointNeXt-B/L); PointNeXt-S has none.

Pic@Point needs local features: :meth:`PointNeXtEncoder.forward_features` returns the last
stage's per-point features before the global max pooling, (B, 512, N/16), with their
centres (B, N/16, 3), so that the global feature is exactly the max-pool of the local ones
(the paper's f^3d and A(f^3d)).

Scene segmentation (``picat.models.segmentation``) uses the same modules with
``group_all=False`` and strides (1, 4, 4, 4, 4): :meth:`PointNeXtEncoder.forward_stages`
returns every stage's (xyz, features) for the decoder, and ``extra_channels`` appends
further per-point inputs (colours) after the geometric ones. Both default to the
classification encoder, so existing configs and checkpoints build identically.

Farthest point sampling is the one sequential operation (one loop step per picked point,
960 for N = 1024). When the clouds are fixed up to a rotation, as in pre-training, the picks
can be computed once: :meth:`PointNeXtEncoder.sample_indices` returns them, and
:meth:`PointNeXtEncoder.forward_features` takes them as ``samples`` instead of running FPS.

The first linear map of a grouped MLP, W [dp, f_j] = W_p dp + W_f f_j, is evaluated with
W_f applied to the N source points before they are gathered into S x K groups: the same
parameters and outputs as the textbook order (up to float rounding), with S*K/N (16 for
stride 2 and K = 32) times fewer multiply-adds for that layer's feature part.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from picat.models.ops import ball_query, farthest_point_sample, gather_points

__all__ = ["PointNeXtConfig", "PointNeXtEncoder", "PointNeXtClassifier", "ClsHead", "count_parameters"]

UP_AXES = {"x": 0, "y": 1, "z": 2}


@dataclass
class PointNeXtConfig:
    """Hyper-parameters of the PointNeXt encoder (defaults: PointNeXt-S for classification).

    Attributes:
        width: channels of the stem; doubled at every stage with stride > 1.
        strides: down-sampling ratio per stage. The first and last must be 1 (stem and
            group-all stage), the others >= 2.
        blocks: blocks per stage, counting the stem / set abstraction itself; each extra
            block is an InvResMLP. The last (group-all) stage must have 1.
        radius: ball radius of the first set abstraction, in input units.
        radius_scaling: radius factor per down-sampling stage.
        nsample: neighbours per ball (K).
        sa_layers: linear layers in a set abstraction's grouped MLP.
        expansion: channel expansion of an InvResMLP's point-wise MLP.
        normalize_dp: divide the neighbours' relative positions by the radius.
        use_height: append the height (up-coordinate minus the cloud's lowest one) as input
            feature, as PointNeXt does for ScanObjectNN.
        use_normals: the input carries normals (B, N, 6) that are appended as features.
        up_axis: "x", "y" or "z", the axis that is up (ShapeNet and ScanObjectNN are Y-up).
        group_all: the last stage is the group-all stage (classification). False for the
            segmentation encoder, whose stages all down-sample (strides 1, 4, 4, 4, 4) and
            whose per-stage outputs feed a decoder.
        extra_channels: per-point input channels appended after the geometric ones (e.g. 3
            colour channels for S3DIS), passed to the encoder as ``extra`` (B, N, extra_channels).
    """

    width: int = 32
    strides: tuple[int, ...] = (1, 2, 2, 2, 2, 1)
    blocks: tuple[int, ...] = (1, 1, 1, 1, 1, 1)
    radius: float = 0.15
    radius_scaling: float = 1.5
    nsample: int = 32
    sa_layers: int = 2
    expansion: int = 4
    normalize_dp: bool = True
    use_height: bool = True
    use_normals: bool = False
    up_axis: str = "y"
    group_all: bool = True
    extra_channels: int = 0

    def __post_init__(self) -> None:
        self.strides = tuple(self.strides)
        self.blocks = tuple(self.blocks)
        if self.width < 1:
            raise ValueError(f"width must be positive, got {self.width}")
        if self.group_all:
            if len(self.strides) < 2:
                raise ValueError(f"strides needs a stem and a group-all stage, got {self.strides}")
            if self.strides[0] != 1 or self.strides[-1] != 1 or any(s < 2 for s in self.strides[1:-1]):
                raise ValueError(f"strides must be 1 first and last and >= 2 between, got {self.strides}")
        elif not self.strides or self.strides[0] != 1 or any(s < 2 for s in self.strides[1:]):
            raise ValueError(f"strides (without group-all stage) must be 1 first and >= 2 after, got {self.strides}")
        if len(self.blocks) != len(self.strides) or any(b < 1 for b in self.blocks):
            raise ValueError(f"blocks must hold one count >= 1 per stage ({len(self.strides)}), got {self.blocks}")
        if self.group_all and self.blocks[-1] != 1:
            raise ValueError(f"the group-all stage takes no extra blocks, got blocks[-1] = {self.blocks[-1]}")
        if isinstance(self.extra_channels, bool) or not isinstance(self.extra_channels, int) or self.extra_channels < 0:
            raise ValueError(f"extra_channels must be an int >= 0, got {self.extra_channels!r}")
        if not self.radius > 0 or not self.radius_scaling > 0:
            raise ValueError(f"radius and radius_scaling must be positive, got {self.radius}, {self.radius_scaling}")
        if self.nsample < 1:
            raise ValueError(f"nsample must be positive, got {self.nsample}")
        if self.sa_layers < 1:
            raise ValueError(f"sa_layers must be positive, got {self.sa_layers}")
        if self.expansion < 1:
            raise ValueError(f"expansion must be positive, got {self.expansion}")
        if self.up_axis not in UP_AXES:
            raise ValueError(f"up_axis must be one of {sorted(UP_AXES)}, got {self.up_axis!r}")

    @property
    def in_channels(self) -> int:
        """Input feature channels: xyz (3) + height (1) + normals (3) + extra, as configured."""
        return 3 + int(self.use_height) + 3 * int(self.use_normals) + self.extra_channels

    @property
    def input_names(self) -> tuple[str, ...]:
        """Name of every input feature channel, in the stem's column order."""
        names = ["x", "y", "z"] + ["height"] * int(self.use_height) + ["nx", "ny", "nz"] * int(self.use_normals)
        return tuple(names + [f"extra_{i}" for i in range(self.extra_channels)])

    @property
    def point_dim(self) -> int:
        """Columns the encoder expects per input point: 6 with normals, else 3."""
        return 6 if self.use_normals else 3

    @property
    def channels(self) -> tuple[int, ...]:
        """Output channels per stage (32, 64, 128, 256, 512, 512 for PointNeXt-S)."""
        width, out = self.width, []
        for stride in self.strides:
            if stride != 1:
                width *= 2
            out.append(width)
        return tuple(out)

    @property
    def radii(self) -> tuple[tuple[float, ...], ...]:
        """Radius per block of every stage (first entry: the set abstraction's)."""
        radius, out = self.radius, []
        for stride, blocks in zip(self.strides, self.blocks, strict=True):
            if stride == 1:
                out.append((radius,) * blocks)
            else:
                # The set abstraction groups at the current radius; the blocks after it work
                # on the down-sampled set and use the next, larger one.
                out.append((radius,) + (radius * self.radius_scaling,) * (blocks - 1))
                radius *= self.radius_scaling
        return tuple(out)

    @property
    def min_points(self) -> int:
        """Fewest input points that leave at least one point for the last stage."""
        return math.prod(self.strides)

    def to_dict(self) -> dict:
        """Plain-dict form (lists for tuples), e.g. for checkpoints and YAML."""
        out = asdict(self)
        out["strides"], out["blocks"] = list(self.strides), list(self.blocks)
        return out


def mlp(channels: list[int], last_act: bool) -> nn.Sequential:
    """Point-wise (linear, BN, ReLU) layers over flattened rows (M, C).

    Linear layers carry no bias since BN follows each; the last ReLU is optional. Callers
    flatten to (M, C) first: BatchNorm1d normalises (M, C) per column without transposes,
    and in-place ReLU on a fresh tensor (not a view) keeps autograd free of CopySlices.
    """
    layers: list[nn.Module] = []
    for i, (c_in, c_out) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
        layers += [nn.Linear(c_in, c_out, bias=False), nn.BatchNorm1d(c_out)]
        if last_act or i < len(channels) - 2:
            layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class _GroupedMLP(nn.Module):
    """MLP on grouped inputs [dp, f_j] whose first linear map is split into W_p dp + W_f f_j.

    The split lets W_f act on the N source points before they are gathered into S x K
    groups; parameters and outputs equal those of one Linear over the concatenation.
    """

    def __init__(self, channels: list[int], last_act: bool) -> None:
        super().__init__()
        self.first = nn.Linear(channels[0], channels[1], bias=False)  # input order [dp (3), f (C)]
        self.first_norm = nn.BatchNorm1d(channels[1])
        self.first_act = nn.ReLU(inplace=True) if (last_act or len(channels) > 2) else nn.Identity()
        self.rest = mlp(channels[1:], last_act) if len(channels) > 2 else nn.Sequential()

    def forward(self, dp: Tensor, features: Tensor, idx: Tensor | None) -> Tensor:
        """
        Args:
            dp: (B, S, K, 3) relative positions of the neighbours (or (B, 1, N, 3)).
            features: (B, N, C) source point features.
            idx: (B, S, K) neighbour indices into N, or None when every point is one group
                (then ``features`` is used as (B, 1, N, C)).

        Returns:
            (B, S, K, C_out) per-neighbour features before the reduction.
        """
        w_p, w_f = self.first.weight[:, :3], self.first.weight[:, 3:]
        projected = F.linear(features, w_f)  # (B, N, C1), per point
        grouped = projected[:, None] if idx is None else gather_points(projected, idx)
        h = grouped + F.linear(dp, w_p)
        shape = h.shape
        h = self.rest(self.first_act(self.first_norm(h.reshape(-1, shape[-1]))))
        return h.reshape(*shape[:-1], h.shape[-1])


class Stem(nn.Module):
    """Stage 0: a per-point linear embedding (with bias, no norm, no activation)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.linear = nn.Linear(in_channels, out_channels)

    def forward(self, xyz: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        return xyz, self.linear(features)


class SetAbstraction(nn.Module):
    """Down-sampling set abstraction with a residual branch (PointNeXt-S's ``sa_use_res``).

    FPS keeps N // stride centres; each groups K ball neighbours as [dp / r, f_j], runs the
    grouped MLP (the last layer without ReLU), max-pools over the neighbours, adds a linear
    projection of the centre's own input feature and applies ReLU.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, radius: float, nsample: int,
                 layers: int, normalize_dp: bool) -> None:
        super().__init__()
        self.stride, self.radius, self.nsample, self.normalize_dp = stride, radius, nsample, normalize_dp
        mid = out_channels // 2
        self.mlp = _GroupedMLP([in_channels + 3] + [mid] * (layers - 1) + [out_channels], last_act=False)
        self.skip = nn.Linear(in_channels, out_channels) if in_channels != out_channels else nn.Identity()
        self.act = nn.ReLU(inplace=True)

    def forward(self, xyz: Tensor, features: Tensor, keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(B, N, 3), (B, N, C) -> (B, N // stride, 3), (B, N // stride, C_out).

        Args:
            keep: (B, N // stride) long FPS indices into N computed beforehand (see
                :meth:`PointNeXtEncoder.sample_indices`), or None to run FPS here.
        """
        if keep is None:
            keep = farthest_point_sample(xyz, xyz.shape[1] // self.stride)  # (B, S)
        centres = gather_points(xyz, keep)  # (B, S, 3)
        idx = ball_query(self.radius, self.nsample, xyz, centres)  # (B, S, K)
        dp = gather_points(xyz, idx) - centres[:, :, None, :]
        if self.normalize_dp:
            dp = dp / self.radius
        # max with indices: its backward is one scatter, where amax's compares the whole input.
        pooled = self.mlp(dp, features, idx).max(dim=2).values  # (B, S, C_out)
        identity = self.skip(gather_points(features, keep))
        return centres, self.act(pooled + identity)


class GroupAll(nn.Module):
    """Last stage: per-point MLP of [xyz, f] (absolute xyz, as OpenPoints' GroupAll).

    ``forward`` returns the per-point features before pooling; the encoder max-pools them.
    """

    def __init__(self, in_channels: int, out_channels: int, layers: int) -> None:
        super().__init__()
        self.mlp = _GroupedMLP([in_channels + 3] + [out_channels] * layers, last_act=True)

    def forward(self, xyz: Tensor, features: Tensor) -> Tensor:
        """(B, L, 3), (B, L, C) -> (B, L, C_out) per-point features."""
        return self.mlp(xyz[:, None], features, None)[:, 0]


class InvResMLP(nn.Module):
    """Inverted residual block on a fixed point set (PointNeXt-B/L; not used by PointNeXt-S).

    Local aggregation ([dp / r, f_j] -> linear, BN, ReLU -> max over K), then a point-wise
    C -> expansion*C -> C MLP (BN, ReLU between, BN last), plus the input, then ReLU.
    """

    def __init__(self, channels: int, radius: float, nsample: int, expansion: int, normalize_dp: bool) -> None:
        super().__init__()
        self.radius, self.nsample, self.normalize_dp = radius, nsample, normalize_dp
        self.aggregate = _GroupedMLP([channels + 3, channels], last_act=True)
        self.pointwise = mlp([channels, channels * expansion, channels], last_act=False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, xyz: Tensor, features: Tensor) -> tuple[Tensor, Tensor]:
        """(B, L, 3), (B, L, C) -> (B, L, 3), (B, L, C)."""
        idx = ball_query(self.radius, self.nsample, xyz, xyz)
        dp = gather_points(xyz, idx) - xyz[:, :, None, :]
        if self.normalize_dp:
            dp = dp / self.radius
        pooled = self.aggregate(dp, features, idx).max(dim=2).values
        h = self.pointwise(pooled.reshape(-1, pooled.shape[-1])).reshape(pooled.shape)
        return xyz, self.act(h + features)


class PointNeXtEncoder(nn.Module):
    """PointNeXt encoder: points (B, N, 3 or 6) -> global feature (B, global_dim).

    Attributes:
        config: the :class:`PointNeXtConfig`.
        global_dim: channels of the global feature (512 for PointNeXt-S).
        local_dim: channels of the local features (512 for PointNeXt-S).
        local_stride: N / L, the input points per local feature (16 for PointNeXt-S).
    """

    def __init__(self, config: PointNeXtConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or PointNeXtConfig()
        channels, radii = config.channels, config.radii
        stages: list[nn.Module] = []
        in_channels = config.in_channels
        for i, stride in enumerate(config.strides):
            out_channels = channels[i]
            if i == 0:
                first: nn.Module = Stem(in_channels, out_channels)
            elif i == len(config.strides) - 1 and config.group_all:
                first = GroupAll(in_channels, out_channels, config.sa_layers)
            else:
                first = SetAbstraction(in_channels, out_channels, stride, radii[i][0], config.nsample,
                                       config.sa_layers, config.normalize_dp)
            blocks = [InvResMLP(out_channels, r, config.nsample, config.expansion, config.normalize_dp)
                      for r in radii[i][1:]]
            stages.append(nn.ModuleList([first, *blocks]))
            in_channels = out_channels
        self.stages = nn.ModuleList(stages)
        self.global_dim = channels[-1]
        self.local_dim = channels[-1]
        self.local_stride = config.min_points

    def input_features(self, points: Tensor, extra: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Validate the input and build the per-point input features.

        Args:
            points: (B, N, 3) xyz, or (B, N, 6) xyz + normals when ``config.use_normals``.
            extra: (B, N, extra_channels) further per-point channels (e.g. colours); required
                exactly when ``config.extra_channels > 0``.

        Returns:
            xyz (B, N, 3) and features (B, N, in_channels) = [xyz, height?, normals?, extra?].
        """
        cfg = self.config
        if not isinstance(points, Tensor) or points.dim() != 3:
            shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
            raise ValueError(f"points must be a (B, N, {cfg.point_dim}) tensor, got {shape}")
        if points.shape[-1] != cfg.point_dim:
            hint = " (set use_normals=True to use normals)" if points.shape[-1] == 6 else ""
            raise ValueError(f"points must have {cfg.point_dim} columns, got shape {tuple(points.shape)}{hint}")
        if not points.is_floating_point():
            raise ValueError(f"points must be floating point, got {points.dtype}")
        if points.shape[0] < 1 or points.shape[1] < cfg.min_points:
            raise ValueError(f"points needs B >= 1 and N >= {cfg.min_points} (the product of the strides), "
                             f"got shape {tuple(points.shape)}")
        xyz = points[..., :3].contiguous()
        parts = [xyz]
        if cfg.use_height:
            up = xyz[..., UP_AXES[cfg.up_axis]:UP_AXES[cfg.up_axis] + 1]
            parts.append(up - up.amin(dim=1, keepdim=True))
        if cfg.use_normals:
            parts.append(points[..., 3:6])
        if cfg.extra_channels:
            expected = (*points.shape[:2], cfg.extra_channels)
            if not isinstance(extra, Tensor) or tuple(extra.shape) != expected:
                shape = tuple(extra.shape) if isinstance(extra, Tensor) else type(extra).__name__
                raise ValueError(f"this encoder takes {cfg.extra_channels} extra channels per point: extra must have "
                                 f"shape {expected} to match points {tuple(points.shape)}, got {shape}")
            if not extra.is_floating_point():
                raise ValueError(f"extra must be floating point, got {extra.dtype}")
            parts.append(extra.to(xyz.dtype))
        elif extra is not None:
            raise ValueError("this encoder takes no extra channels (config.extra_channels = 0), but extra was given")
        return xyz, torch.cat(parts, dim=-1)

    def sample_sizes(self, n_points: int) -> tuple[int, ...]:
        """Points kept by FPS in each set abstraction, finest first, for clouds of ``n_points``
        (512, 256, 128, 64 for PointNeXt-S and N = 1024)."""
        sizes = []
        for stage in self.stages:
            if isinstance(stage[0], SetAbstraction):
                n_points //= stage[0].stride
                sizes.append(n_points)
        return tuple(sizes)

    def sample_count(self, n_points: int) -> int:
        """Columns of :meth:`sample_indices` for clouds of ``n_points`` (960 for PointNeXt-S, N = 1024)."""
        return sum(self.sample_sizes(n_points))

    @torch.no_grad()
    def sample_indices(self, points: Tensor) -> Tensor:
        """The farthest point samples that :meth:`forward_features` would pick, computed alone.

        They depend on the xyz only, and on nothing but their distances, so they can be
        computed once for a cloud that is later only rotated (up to float rounding in near-ties).

        Args:
            points: (B, N, 3 or more) clouds, xyz in the first 3 channels.

        Returns:
            (B, S_1 + ... + S_m) long: for each set abstraction i (sizes :meth:`sample_sizes`),
            its S_i indices into the S_{i-1} points of the level before (S_0 = N), concatenated.
        """
        xyz = points[..., :3].contiguous()  # the same values as input_features' xyz
        picked = []
        for size in self.sample_sizes(xyz.shape[1]):
            keep = farthest_point_sample(xyz, size)
            picked.append(keep)
            xyz = gather_points(xyz, keep)  # the next stage's points, as SetAbstraction's centres
        return torch.cat(picked, dim=1) if picked else points.new_zeros((points.shape[0], 0), dtype=torch.long)

    def _split_samples(self, samples: Tensor, points: Tensor) -> list[Tensor]:
        """Validate a :meth:`sample_indices` tensor (any integer dtype) for ``points`` (B, N, C);
        its per-stage long (B, S_i) parts."""
        sizes = self.sample_sizes(points.shape[1])
        expected = (points.shape[0], sum(sizes))
        if not isinstance(samples, Tensor) or tuple(samples.shape) != expected:
            shape = tuple(samples.shape) if isinstance(samples, Tensor) else type(samples).__name__
            raise ValueError(f"samples must have shape {expected} (sample_indices of points {tuple(points.shape)}), "
                             f"got {shape}")
        if samples.is_floating_point() or samples.is_complex() or samples.dtype == torch.bool:
            raise ValueError(f"samples must be integer indices, got {samples.dtype}")
        return [part.long() for part in samples.split(sizes, dim=1)]

    def forward_stages(self, points: Tensor, extra: Tensor | None = None,
                       samples: Tensor | None = None) -> list[tuple[Tensor, Tensor]]:
        """Output of every down-sampling stage (the group-all stage, if any, excluded).

        Args:
            points: (B, N, 3 or 6) as :meth:`input_features`; N >= ``config.min_points``.
            extra: (B, N, extra_channels) or None, as :meth:`input_features`.
            samples: (B, S) integer FPS indices from :meth:`sample_indices` (of these clouds,
                or of the same clouds before a rotation), or None to run FPS.

        Returns:
            One (xyz (B, N_i, 3), features (B, N_i, channels[i])) pair per stage, finest first:
            N_0 = N, N_i = N_{i-1} // strides[i]; the xyz of every level are a subset of the
            previous level's.
        """
        xyz, features = self.input_features(points, extra)
        keeps = iter(self._split_samples(samples, points)) if samples is not None else None
        pyramid = self.stages[:-1] if self.config.group_all else self.stages
        levels = []
        for stage in pyramid:
            for block in stage:
                if keeps is not None and isinstance(block, SetAbstraction):
                    xyz, features = block(xyz, features, next(keeps))
                else:
                    xyz, features = block(xyz, features)
            levels.append((xyz, features))
        return levels

    def forward_features(self, points: Tensor, extra: Tensor | None = None,
                         samples: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Global and local features.

        Args:
            points: (B, N, 3), or (B, N, 6) with normals; N >= ``config.min_points``.
            extra: (B, N, extra_channels) when ``config.extra_channels > 0``, else None.
            samples: (B, S) integer FPS indices from :meth:`sample_indices`, or None to run FPS.

        Returns:
            global: (B, global_dim), the max over the local features.
            local: (B, local_dim, L), the last stage's per-point features before pooling,
                L = N // local_stride (64 for N = 1024).
            centres: (B, L, 3) the xyz of those L points (a subset of the input points).
            Without a group-all stage (``config.group_all=False``) the local features are the
            last stage's output.
        """
        xyz, features = self.forward_stages(points, extra, samples)[-1]
        local = self.stages[-1][0](xyz, features) if self.config.group_all else features  # (B, L, D)
        return local.max(dim=1).values, local.transpose(1, 2), xyz

    def forward(self, points: Tensor, extra: Tensor | None = None) -> Tensor:
        """(B, N, 3 or 6) [, extra (B, N, extra_channels)] -> (B, global_dim)."""
        return self.forward_features(points, extra)[0]


class ClsHead(nn.Module):
    """PointNeXt's classification head: (linear, BN, ReLU, dropout) per hidden width, then linear."""

    def __init__(self, in_dim: int, num_classes: int, hidden: tuple[int, ...] = (512, 256),
                 dropout: float = 0.5) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        layers: list[nn.Module] = []
        for width in hidden:
            layers += [nn.Linear(in_dim, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            in_dim = width
        layers.append(nn.Linear(in_dim, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, features: Tensor) -> Tensor:
        """(B, in_dim) -> (B, num_classes) logits."""
        return self.layers(features)


class PointNeXtClassifier(nn.Module):
    """Encoder + :class:`ClsHead`: points (B, N, 3 or 6) -> logits (B, num_classes).

    Pass a pre-trained ``encoder`` to fine-tune it; otherwise one is built from ``config``.
    """

    def __init__(self, num_classes: int, config: PointNeXtConfig | None = None, encoder: PointNeXtEncoder | None = None,
                 hidden: tuple[int, ...] = (512, 256), dropout: float = 0.5) -> None:
        super().__init__()
        if encoder is not None and config is not None and encoder.config != config:
            raise ValueError(f"config {config} differs from the given encoder's {encoder.config}")
        self.encoder = encoder if encoder is not None else PointNeXtEncoder(config)
        self.head = ClsHead(self.encoder.global_dim, num_classes, hidden, dropout)
        self.num_classes = num_classes

    def forward(self, points: Tensor) -> Tensor:
        return self.head(self.encoder(points))


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
