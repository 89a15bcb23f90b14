"""DGCNN (Wang et al., 2019) as in the official PyTorch code, with a fast EdgeConv.

Architecture (the official classification backbone, without its head):

* four EdgeConv layers (64, 64, 128, 256 channels). Each finds the k nearest neighbours of
  every point in the *current* feature space (negative squared distance by a matmul, then
  top-k; a point is its own nearest neighbour, as in the official code), builds the edge
  feature ``[x_j - x_i, x_i]``, applies a 1x1 Conv2d (no bias) + BatchNorm2d + LeakyReLU(0.2)
  and takes the max over the k neighbours;
* the concatenation of the four outputs (512 channels) goes through Conv1d 512 -> emb_dims
  (no bias) + BatchNorm1d + LeakyReLU(0.2): the per-point "local" features;
* the global feature is concat(max pool, average pool) over points: 2 * emb_dims.

The textbook EdgeConv materialises (B, 2C, N, k) edge tensors and runs its 1x1 conv on N*k
columns, which is where most of DGCNN's time goes on a CPU. :class:`EdgeConv` computes the
same function (train and eval mode, values and gradients) with two identities:

1. The first linear map distributes over the edge feature:
   ``W [x_j - x_i; x_i] = W1 x_j + (W2 - W1) x_i``, so the matmul runs once per point and
   the edge pre-activation is ``h_ij = a_j + b_i`` with ``a = W1 x``, ``b = (W2 - W1) x``.
2. BatchNorm (per channel, scale ``s``) followed by LeakyReLU is a per-channel monotone map:
   increasing when ``s > 0``, decreasing when ``s < 0``. So the max over neighbours of the
   activated edges is that map applied to ``max_j a_j + b_i`` (or ``min_j a_j + b_i``), and no
   (B, C, N, k) tensor is ever built. The train-mode batch statistics over all B*N*k edges
   are computed exactly from per-point quantities (in-degree counts and per-point neighbour
   sums), so they are the textbook ones.

Measured with ``benchmarks/dgcnn_edgeconv.py`` (see its docstring for the figures).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from picat.models.ops import farthest_point_sample

NEGATIVE_SLOPE = 0.2  # LeakyReLU slope of the official code
_EMBEDDING_BAG_MAX = 2  # mode code of torch.embedding_bag: 0 sum, 1 mean, 2 max


@dataclass
class DGCNNConfig:
    """Hyper-parameters of :class:`DGCNN` (defaults: the official 1024-point setting).

    Attributes:
        k: neighbours per point (the point itself included), 20 for 1024 points.
        emb_dims: channels of the per-point top-level features; the global feature has
            twice as many (max and average pool).
        in_channels: input channels per point; the first 3 must be xyz (3, or 6 with normals).
        edge_channels: output channels of the successive EdgeConv layers.
        local_centres: when set, :meth:`DGCNN.forward_features` returns the local features of
            only this many centres, picked by farthest point sampling on xyz.
    """

    k: int = 20
    emb_dims: int = 1024
    in_channels: int = 3
    edge_channels: tuple[int, ...] = (64, 64, 128, 256)
    local_centres: int | None = None

    def __post_init__(self) -> None:
        self.edge_channels = tuple(self.edge_channels)  # a YAML list arrives as a list
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.emb_dims < 1:
            raise ValueError(f"emb_dims must be positive, got {self.emb_dims}")
        if self.in_channels < 3:
            raise ValueError(f"in_channels must be at least 3 (xyz first), got {self.in_channels}")
        if not self.edge_channels or any(c < 1 for c in self.edge_channels):
            raise ValueError(f"edge_channels must be a non-empty tuple of positive ints, got {self.edge_channels}")
        if self.local_centres is not None and self.local_centres < 1:
            raise ValueError(f"local_centres must be positive or None, got {self.local_centres}")


def _knn(features: Tensor, k: int) -> Tensor:
    """Indices of the k nearest neighbours of every point, itself included.

    Args:
        features: (B, N, C) point features.
        k: number of neighbours, at most N.

    Returns:
        (B, N, k) int64 indices into the N points, nearest first.
    """
    # Ranking row i by -|x_i - x_j|^2 = 2 x_i.x_j - |x_j|^2 - |x_i|^2: the last term is constant
    # along the row, so it is dropped, and the rest is one fused baddbmm (about half the time
    # of the official three-pass formula on a CPU).
    # In at least float32, also under bf16 autocast: the expansion cancels, and bf16's 8-bit
    # mantissa would reorder the neighbours of every point.
    with torch.autocast(device_type=features.device.type, enabled=False):
        features = features.to(torch.promote_types(features.dtype, torch.float32))
        sq_norms = features.square().sum(-1)  # (B, N)
        scores = torch.baddbmm(sq_norms.unsqueeze(1), features, features.transpose(1, 2), beta=-1, alpha=2)
    return scores.topk(k, dim=-1)[1]


def _farthest_point_sample(xyz: Tensor, n_samples: int) -> Tensor:
    """Farthest point sampling, starting from point 0 of every cloud (deterministic).

    :func:`picat.models.ops.farthest_point_sample`: the same picks as the loop this module
    used to carry (squared distances summed x, y, z in that order, first index on ties), for
    float32 and float64 clouds, without its per-step sum over a last dimension of 3, which
    made it about 60 times slower on a CPU (2.3 s against 0.04 s for 256 of 1024 points, batch
    32). Half-precision clouds are now measured in float32.

    Args:
        xyz: (B, N, 3) coordinates.
        n_samples: number of points to pick, 1 <= n_samples <= N.

    Returns:
        (B, n_samples) int64 indices; distinct as long as the cloud has n_samples distinct points.
    """
    n_points = xyz.shape[1]
    if not 1 <= n_samples <= n_points:
        raise ValueError(f"cannot sample {n_samples} points from clouds of {n_points}")
    return farthest_point_sample(xyz, n_samples)


class EdgeConv(nn.Module):
    """One EdgeConv layer, computed per point (see the module docstring).

    Holds the textbook parameters, ``conv`` = Conv2d(2C, O, 1, bias=False) over
    ``[x_j - x_i, x_i]`` and ``bn`` = BatchNorm2d(O), so its state_dict is interchangeable with
    a textbook ``Conv2d -> BatchNorm2d -> LeakyReLU -> max`` layer using those names.
    """

    # ``bn`` is never called: its statistics are computed here (from its parameters, summed
    # over data-parallel ranks through ``bn.sum_across_ranks``), so it must stay a
    # GlobalBatchNorm under DDP (picat.pretrain.distributed.use_global_batch_norm).
    owns_batch_statistics = True

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv = nn.Conv2d(2 * in_channels, out_channels, kernel_size=1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, features: Tensor, neighbours: Tensor) -> Tensor:
        """Apply the layer.

        Args:
            features: (B, N, C) per-point input features (channels last).
            neighbours: (B, N, k) int64 indices into the N points.

        Returns:
            (B, N, O) features: max over j of LeakyReLU(BN(W [x_j - x_i; x_i])).
        """
        batch, n_points, channels = features.shape
        if channels != self.in_channels:
            raise ValueError(f"EdgeConv expects {self.in_channels} input channels, got {channels}")
        k = neighbours.shape[-1]
        weight = self.conv.weight.view(self.out_channels, 2 * channels)
        w_neighbour, w_centre = weight[:, :channels], weight[:, channels:]
        flat = features.reshape(batch * n_points, channels)
        a = F.linear(flat, w_neighbour)  # (B*N, O): the x_j term, gathered per edge
        b = F.linear(flat, w_centre - w_neighbour)  # (B*N, O): the x_i term
        # Neighbour indices into the B*N rows of a.
        offsets = torch.arange(batch, device=neighbours.device).view(batch, 1, 1) * n_points
        rows = (neighbours + offsets).view(batch * n_points, k)

        bn = self.bn
        use_batch_stats = self.training or bn.running_mean is None
        if use_batch_stats:
            # Under data-parallel training the BatchNorm layer may carry a differentiable sum
            # over processes (picat.pretrain.distributed.GlobalBatchNorm): the statistics are
            # then those of the global batch, as one process would compute them.
            across_ranks = getattr(bn, "sum_across_ranks", None)
            total = across_ranks or (lambda tensor: tensor)
            out_channels = self.out_channels
            # Statistics in at least float32: under bf16 autocast the linear maps above come out
            # in bf16, whose 8-bit mantissa would spoil the means and variances.
            a, b = a.to(torch.promote_types(a.dtype, torch.float32)), b.to(torch.promote_types(b.dtype, torch.float32))
            # Edge mean of h_ij = a_j + b_i: a_m counts once per edge that points at m (its
            # in-degree), b_i k times (once per edge leaving i).
            # index_add_, not bincount: bincount's output size depends on the data, so on a GPU
            # it waits for the device to learn it (the counts of 1.0 are exact in any order).
            flat_rows = rows.view(-1)
            in_degree = a.new_zeros(batch * n_points).index_add_(0, flat_rows, a.new_ones(flat_rows.shape))
            n_edges: float | Tensor = float(batch * n_points * k)
            n_rows: float | Tensor = float(batch * n_points)
            if across_ranks is not None:
                # The global batch's counts, summed on the device in float64 (exact far beyond
                # float32's 2**24) and kept there: reading them would stall a GPU every layer.
                counts = torch.full((2,), n_rows, dtype=torch.float64, device=a.device)
                counts[0] *= k
                counts = total(counts)
                n_edges, n_rows = counts[0], counts[1]
            sums = total(torch.cat([in_degree @ a, b.sum(0)]))
            mean_a, mean_b = sums[:out_channels] / n_edges, sums[out_channels:] / n_rows
            a = a - mean_a  # centring first keeps the variance free of cancellation
            b = b - mean_b
            # sum_j a_j per point, without materialising the edges (a fused gather-sum).
            neighbour_sums = F.embedding_bag(rows, a, mode="sum")
            # E[(a_j + b_i)^2] = E[a_j^2] + 2 E[a_j b_i] + E[b_i^2] over the edges.
            squares = total(torch.cat([(in_degree @ a.square()) + 2 * (b * neighbour_sums).sum(0), b.square().sum(0)]))
            var = squares[:out_channels] / n_edges + squares[out_channels:] / n_rows
            var = var.clamp_min(0)  # rounding can dip below 0 for a constant channel
            if self.training and bn.track_running_stats:
                self._update_running_stats(mean_a + mean_b, var, n_edges)
        else:
            b = b - bn.running_mean  # h - mean = a_j + (b_i - mean)
            var = bn.running_var
        scale = torch.rsqrt(var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = bn.bias if bn.bias is not None else torch.zeros_like(scale)

        # BN + LeakyReLU is increasing in h where scale > 0 and decreasing where scale < 0, so
        # the neighbour maximising the output maximises sign * a_j. Find it without autograd
        # (embedding_bag's max mode returns the winning row per channel), then gather the
        # winner's value with autograd: the gradient reaches exactly that edge, as the
        # textbook max's does.
        sign = torch.where(scale.detach() < 0, -1.0, 1.0).to(a.dtype)
        with torch.no_grad():
            signed = a * sign
            bag_offsets = torch.arange(0, rows.numel(), k, device=rows.device)
            winners = torch.embedding_bag(signed, rows.view(-1), bag_offsets, False, _EMBEDDING_BAG_MAX)[3]
        extreme = a.gather(0, winners)  # (B*N, O): a of the winning neighbour, per channel
        out = F.leaky_relu((extreme + b) * scale + shift, NEGATIVE_SLOPE)
        return out.view(batch, n_points, self.out_channels)

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, n_edges: float | Tensor) -> None:
        """Update the running statistics exactly as BatchNorm2d does in train mode."""
        bn = self.bn
        bn.num_batches_tracked.add_(1)
        momentum = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
        if isinstance(n_edges, Tensor):
            unbiased = var * (n_edges / (n_edges - 1).clamp_min(1))
        else:
            unbiased = var * (n_edges / max(n_edges - 1, 1))
        bn.running_mean.lerp_(mean.to(bn.running_mean.dtype), momentum)
        bn.running_var.lerp_(unbiased.to(bn.running_var.dtype), momentum)


class DGCNN(nn.Module):
    """DGCNN backbone: (B, N, C_in) points -> (B, 2 * emb_dims) global feature.

    As in the official code, every layer's graph is built in its input feature space, the
    first one's on all input channels (xyz and, when given, normals).

    Parameter names: ``edge_convs.{i}.conv`` / ``edge_convs.{i}.bn`` (textbook Conv2d and
    BatchNorm2d shapes), ``embed_conv`` (Conv1d sum(edge_channels) -> emb_dims, no bias),
    ``embed_bn`` (BatchNorm1d).
    """

    def __init__(self, config: DGCNNConfig | None = None) -> None:
        super().__init__()
        self.config = config if config is not None else DGCNNConfig()
        cfg = self.config
        widths = (cfg.in_channels, *cfg.edge_channels)
        self.edge_convs = nn.ModuleList(EdgeConv(c_in, c_out)
                                        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True))
        self.embed_conv = nn.Conv1d(sum(cfg.edge_channels), cfg.emb_dims, kernel_size=1, bias=False)
        self.embed_bn = nn.BatchNorm1d(cfg.emb_dims)
        self.global_dim = 2 * cfg.emb_dims
        self.local_dim = cfg.emb_dims

    def _check_points(self, points: Tensor, check_centres: bool = True) -> None:
        cfg = self.config
        if points.dim() != 3 or points.shape[-1] != cfg.in_channels:
            raise ValueError(f"points must have shape (B, N, {cfg.in_channels}), got {tuple(points.shape)}")
        if not points.is_floating_point():
            raise ValueError(f"points must be a floating-point tensor, got {points.dtype}")
        if points.shape[0] < 1:
            raise ValueError(f"points must hold at least one cloud, got shape {tuple(points.shape)}")
        if cfg.k >= points.shape[1]:
            raise ValueError(f"k={cfg.k} needs more than k points per cloud, got N={points.shape[1]}")
        if check_centres and cfg.local_centres is not None and cfg.local_centres > points.shape[1]:
            raise ValueError(f"local_centres={cfg.local_centres} exceeds the N={points.shape[1]} points per cloud")

    def _edge_and_embedded(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """(B, N, C_in) -> (B, N, sum(edge_channels)) concatenated EdgeConv outputs and
        (B, N, emb_dims) per-point top-level features (channels last)."""
        batch, n_points, _ = points.shape
        x = points
        outputs = []
        for layer in self.edge_convs:
            # Dynamic graph: neighbours in the current feature space, as in the official code.
            x = layer(x, _knn(x, self.config.k))
            outputs.append(x)
        edge = torch.cat(outputs, dim=-1)
        stacked = edge.view(batch * n_points, -1)
        # The 1x1 Conv1d as one matmul over the B*N rows; BatchNorm1d of a (rows, C) input has
        # the same statistics (over batch and points) as of the textbook (B, C, N) layout.
        embedded = F.linear(stacked, self.embed_conv.weight.squeeze(-1))
        embedded = F.leaky_relu(self.embed_bn(embedded), NEGATIVE_SLOPE)
        return edge, embedded.view(batch, n_points, self.config.emb_dims)

    def _point_features(self, points: Tensor) -> Tensor:
        """(B, N, C_in) -> (B, N, emb_dims) per-point top-level features (channels last)."""
        return self._edge_and_embedded(points)[1]

    def point_features(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Per-point features of every level, without pooling (for dense prediction).

        Args:
            points: (B, N, C_in) point clouds, xyz in the first 3 channels; N > k.

        Returns:
            edge: (B, N, sum(edge_channels)) the concatenated EdgeConv outputs.
            embedded: (B, N, emb_dims) the embedding conv's output, whose pooling is
                :meth:`forward`'s global feature.
        """
        self._check_points(points, check_centres=False)
        return self._edge_and_embedded(points)

    def with_k(self, k: int) -> DGCNN:
        """A copy of this model (same weights, buffers and train/eval mode) using k neighbours.

        k is a graph hyper-parameter, not a weight, so a backbone pre-trained with one k can
        run with another (e.g. k = 40 for 2048-point part segmentation). The copy owns its
        tensors: training it leaves this model unchanged.
        """
        config = dataclasses.replace(self.config, k=k)  # validates k
        clone = copy.deepcopy(self)
        clone.config = config
        return clone

    @staticmethod
    def _pool(local: Tensor) -> Tensor:
        """(B, N, E) -> (B, 2E): concat(max over points, mean over points)."""
        return torch.cat([local.amax(dim=1), local.mean(dim=1)], dim=-1)

    def forward(self, points: Tensor) -> Tensor:
        """Global feature.

        Args:
            points: (B, N, C_in) point clouds, xyz in the first 3 channels.

        Returns:
            (B, 2 * emb_dims) concat of max and average pooled per-point features.
        """
        self._check_points(points)
        return self._pool(self._point_features(points))

    def sample_count(self, n_points: int) -> int:
        """Columns of :meth:`sample_indices`: ``config.local_centres``, or 0 without local centres."""
        return self.config.local_centres or 0

    def sample_indices(self, points: Tensor) -> Tensor:
        """The local centres :meth:`forward_features` would pick by farthest point sampling.

        They depend on the xyz only, and on nothing but their distances, so they can be
        computed once for a cloud that is later only rotated (up to float rounding in near-ties).

        Args:
            points: (B, N, 3 or more) clouds, xyz in the first 3 channels.

        Returns:
            (B, L) long indices into N, L = :meth:`sample_count` (0 columns without local centres).
        """
        if self.config.local_centres is None:
            return points.new_zeros((points.shape[0], 0), dtype=torch.long)
        return _farthest_point_sample(points[..., :3], self.config.local_centres)

    def forward_features(self, points: Tensor, samples: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Global feature, per-point (or per-centre) local features and their centres.

        Args:
            points: (B, N, C_in) point clouds, xyz in the first 3 channels.
            samples: (B, L) integer indices from :meth:`sample_indices` (of these clouds, or of
                the same clouds before a rotation) used as the local centres instead of running
                FPS, or None.

        Returns:
            global_feature: (B, 2 * emb_dims), as :meth:`forward`.
            local: (B, emb_dims, L) top-level per-point features (output of the embedding
                conv), L = N, or L = ``config.local_centres`` picked by farthest point sampling.
            centres: (B, L, 3) xyz of those points.
        """
        self._check_points(points)
        if samples is not None:
            expected = (points.shape[0], self.sample_count(points.shape[1]))
            if not isinstance(samples, Tensor) or tuple(samples.shape) != expected:
                shape = tuple(samples.shape) if isinstance(samples, Tensor) else type(samples).__name__
                raise ValueError(f"samples must have shape {expected} (sample_indices of points "
                                 f"{tuple(points.shape)}), got {shape}")
            if samples.is_floating_point() or samples.is_complex() or samples.dtype == torch.bool:
                raise ValueError(f"samples must be integer indices, got {samples.dtype}")
        per_point = self._point_features(points)  # (B, N, E)
        global_feature = self._pool(per_point)
        centres = points[..., :3]
        if self.config.local_centres is not None:
            if samples is None:
                picked = _farthest_point_sample(centres.detach(), self.config.local_centres)  # (B, L)
            else:
                picked = samples.long()
            centres = centres.gather(1, picked.unsqueeze(-1).expand(-1, -1, 3))
            per_point = per_point.gather(1, picked.unsqueeze(-1).expand(-1, -1, per_point.shape[-1]))
        # Contiguous (B, E, L), the layout of the official code's per-point features.
        return global_feature, per_point.transpose(1, 2).contiguous(), centres
