"""Point sampling and grouping in plain PyTorch: farthest point sampling, ball query, kNN, gather.

PointNeXt/OpenPoints implement these as CUDA-only kernels; these versions run on any device
(CPU or CUDA: every tensor is created on the input's device) and reproduce the kernels'
semantics where they are defined:

* FPS starts from index 0 and picks, at each step, the point whose distance to the chosen
  set is largest (the first such index on ties).
* Ball query returns, for each centre, the first ``n_samples`` point indices in index order
  whose squared distance is strictly below ``radius**2``, padded with the first index found.
  Where the CUDA kernel leaves a centre with no neighbour as all zeros, this one uses the
  nearest point instead, so that a group is never made of an unrelated point.

Indices are ``torch.long`` and carry no gradient; :func:`gather_points` is differentiable
with respect to the features.
"""

from __future__ import annotations

from numbers import Integral

import torch
from torch import Tensor

__all__ = ["farthest_point_sample", "ball_query", "knn", "gather_points", "squared_distances"]


def _check_xyz(name: str, xyz: Tensor) -> None:
    """Raise ValueError unless ``xyz`` is a floating (B, N, 3) tensor with N >= 1."""
    if not isinstance(xyz, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(xyz).__name__}")
    if xyz.dim() != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (B, N, 3), got {tuple(xyz.shape)}")
    if not xyz.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {xyz.dtype}")
    if xyz.shape[1] < 1:
        raise ValueError(f"{name} must hold at least one point, got shape {tuple(xyz.shape)}")


def _check_pair(xyz: Tensor, centres: Tensor) -> None:
    _check_xyz("xyz", xyz)
    _check_xyz("centres", centres)
    if xyz.shape[0] != centres.shape[0]:
        raise ValueError(f"xyz and centres must have the same batch size, got {xyz.shape[0]} and {centres.shape[0]}")
    if xyz.device != centres.device:
        raise ValueError(f"xyz and centres must be on the same device, got {xyz.device} and {centres.device}")


def _count(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high], else ValueError (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low or (high is not None and value > high):
        bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an int {bounds}, got {value!r}")
    return int(value)


def _work_dtype(xyz: Tensor) -> torch.dtype:
    # Distances in half precision lose the ordering FPS and the radius test depend on.
    return torch.promote_types(xyz.dtype, torch.float32)


def squared_distances(xyz: Tensor, centres: Tensor) -> Tensor:
    """Exact squared Euclidean distances between every centre and every point.

    Computed as ``dx*dx + dy*dy + dz*dz`` (as the CUDA kernels do), not through the
    ``|a|^2 + |b|^2 - 2ab`` expansion that ``torch.cdist`` switches to on large inputs, whose
    cancellation error can move points across a ball's boundary.

    Args:
        xyz: (B, N, 3) points.
        centres: (B, S, 3) query centres.

    Returns:
        (B, S, N) squared distances, in at least float32, without gradient.
    """
    _check_pair(xyz, centres)
    dtype = _work_dtype(xyz)
    with torch.no_grad():
        # Contiguous coordinate planes (3, B, *), one coordinate at a time: the peak memory
        # stays at (B, S, N) instead of (B, S, N, 3).
        a = centres.detach().to(dtype).permute(2, 0, 1).contiguous()
        b = xyz.detach().to(dtype).permute(2, 0, 1).contiguous()
        d2 = (a[0, :, :, None] - b[0, :, None, :]).square_()
        for axis in (1, 2):
            d2.add_((a[axis, :, :, None] - b[axis, :, None, :]).square_())
    return d2


def farthest_point_sample(
    xyz: Tensor, n_samples: int, start: str | int = 0, generator: torch.Generator | None = None
) -> Tensor:
    """Iterative farthest point sampling, O(S*N) time with a running min-distance tensor.

    Args:
        xyz: (B, N, 3) points.
        n_samples: S, the number of points to pick, 1 <= S <= N.
        start: index of the first point of every cloud (0 by default, as the CUDA kernel),
            or ``"random"`` for a uniformly random first point per cloud.
        generator: random generator for ``start="random"`` (on xyz's device).

    Returns:
        (B, S) long indices into N. They are distinct unless the cloud holds fewer than S
        distinct positions, in which case duplicates of already chosen points are picked
        (as by the CUDA kernel).
    """
    _check_xyz("xyz", xyz)
    batch, n_points, _ = xyz.shape
    n_samples = _count("n_samples", n_samples, 1, n_points)
    device = xyz.device
    if isinstance(start, str):
        if start != "random":
            raise ValueError(f"start must be an int index or 'random', got {start!r}")
        current = torch.randint(n_points, (batch,), device=device, generator=generator)
    elif isinstance(start, Integral) and not isinstance(start, bool):
        if not 0 <= start < n_points:
            raise ValueError(f"start must be an index in [0, N={n_points}), got {start}")
        current = torch.full((batch,), int(start), dtype=torch.long, device=device)
    else:
        raise ValueError(f"start must be an int index or 'random', got {start!r}")

    with torch.no_grad():
        # Coordinate planes (3, B, N): the per-step distance is then three contiguous
        # element-wise passes, several times faster on CPU than a sum over a last dim of 3.
        planes = xyz.detach().to(_work_dtype(xyz)).permute(2, 0, 1).contiguous()
        rows = torch.arange(batch, device=device)
        chosen = torch.empty(batch, n_samples, dtype=torch.long, device=device)
        min_d2 = torch.full((batch, n_points), float("inf"), dtype=planes.dtype, device=device)
        for i in range(n_samples):
            chosen[:, i] = current
            centre = planes[:, rows, current]  # (3, B)
            d2 = (planes[0] - centre[0, :, None]).square_()
            d2.add_((planes[1] - centre[1, :, None]).square_())
            d2.add_((planes[2] - centre[2, :, None]).square_())
            torch.minimum(min_d2, d2, out=min_d2)
            # argmax returns the first maximal index: the deterministic tie rule.
            current = min_d2.argmax(dim=1)
    return chosen


def ball_query(radius: float, n_samples: int, xyz: Tensor, centres: Tensor) -> Tensor:
    """Indices of up to K points within ``radius`` of every centre, padded to K.

    Args:
        radius: ball radius (> 0); a point belongs to the ball when its squared distance is
            strictly below ``radius**2``.
        n_samples: K (>= 1); K may exceed N, the padding then fills the rest.
        xyz: (B, N, 3) points to group.
        centres: (B, S, 3) ball centres.

    Returns:
        (B, S, K) long indices into N: the first K points inside the ball in index order,
        the remaining slots filled with the first of them; a centre with no point inside
        gets its nearest point in every slot.
    """
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius!r}")
    n_samples = _count("n_samples", n_samples, 1)
    d2 = squared_distances(xyz, centres)  # (B, S, N), validates the inputs
    n_points = xyz.shape[1]
    with torch.no_grad():
        inside = d2 < radius * radius
        # Points outside get key N, so the k smallest keys are the first k inside in index
        # order: topk is O(N log K) per centre where a full sort would be O(N log N).
        # int32 keys halve the memory traffic of this (B, S, N) pass.
        order = torch.arange(n_points, dtype=torch.int32, device=xyz.device)
        keys = torch.where(inside, order, n_points)
        take = min(n_samples, n_points)
        idx = keys.topk(take, dim=-1, largest=False, sorted=True).values.long()  # (B, S, take)
        first = idx[..., :1]
        empty = first == n_points
        if bool(empty.any()):
            first = torch.where(empty, d2.argmin(dim=-1, keepdim=True), first)
        idx = torch.where(idx == n_points, first, idx)
        if take < n_samples:
            idx = torch.cat([idx, first.expand(-1, -1, n_samples - take)], dim=-1)
    return idx


def knn(k: int, xyz: Tensor, centres: Tensor) -> tuple[Tensor, Tensor]:
    """The k nearest points of every centre.

    Args:
        k: number of neighbours, 1 <= k <= N.
        xyz: (B, N, 3) points.
        centres: (B, S, 3) query centres.

    Returns:
        dist: (B, S, k) Euclidean distances, ascending, without gradient.
        idx: (B, S, k) long indices into N.
    """
    _check_pair(xyz, centres)
    k = _count("k", k, 1, xyz.shape[1])
    d2 = squared_distances(xyz, centres)
    with torch.no_grad():
        values, idx = d2.topk(k, dim=-1, largest=False, sorted=True)
    return values.clamp_min_(0).sqrt_(), idx


def gather_points(features: Tensor, idx: Tensor, channels_first: bool = False) -> Tensor:
    """Pick per-batch rows of ``features`` by index (differentiable in ``features``).

    Args:
        features: (B, N, C), or (B, C, N) with ``channels_first=True``. The layout is an
            argument, not guessed from the shape, since N may equal C.
        idx: (B, S) or (B, S, K) (any trailing shape) long indices into N.
        channels_first: layout of ``features`` and of the result.

    Returns:
        (B, *idx.shape[1:], C), or (B, C, *idx.shape[1:]) with ``channels_first=True``.
    """
    if not isinstance(features, Tensor) or features.dim() != 3:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"features must be a 3-D tensor (B, N, C) or (B, C, N), got {shape}")
    if not isinstance(idx, Tensor) or idx.dim() < 2:
        shape = tuple(idx.shape) if isinstance(idx, Tensor) else type(idx).__name__
        raise ValueError(f"idx must be a (B, S, ...) index tensor, got {shape}")
    if idx.dtype != torch.long:
        raise ValueError(f"idx must be torch.long, got {idx.dtype}")
    if idx.shape[0] != features.shape[0]:
        raise ValueError(f"features and idx must have the same batch size, got {features.shape[0]} and {idx.shape[0]}")
    batch, rest = idx.shape[0], idx.shape[1:]
    flat = idx.reshape(batch, -1)
    if channels_first:
        channels = features.shape[1]
        out = features.gather(2, flat[:, None, :].expand(-1, channels, -1))
        return out.reshape(batch, channels, *rest)
    n_points, channels = features.shape[1], features.shape[2]
    # Whole-row copies through index_select on the flattened batch run about twice as fast
    # on CPU as an element-wise gather with an expanded index (same values and gradients).
    offsets = torch.arange(batch, device=idx.device)[:, None] * n_points
    out = features.reshape(batch * n_points, channels).index_select(0, (flat + offsets).reshape(-1))
    return out.reshape(batch, *rest, channels)
