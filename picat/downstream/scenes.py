"""Point sampling for indoor rooms (S3DIS, Table 5): voxel sub-sampling, PointNeXt's nearest-
neighbour training crop, and the whole-scene test split into sub-clouds that cover every point.

Written with numpy rather than a library: the operations are a sort and a partition over
integer voxel keys, and libraries that voxelise (Open3D, torch-scatter, MinkowskiEngine) either
average the points of a voxel, which loses the "one real point and its label" semantics
PointNeXt relies on, or bring a compiled dependency the project does not otherwise need.
The crop uses ``np.argpartition`` on squared distances (linear time) instead of a k-d tree:
one query per crop does not repay building a tree.

All functions return index arrays into the room's points, so labels and colours follow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _check_xyz(xyz: np.ndarray) -> np.ndarray:
    xyz = np.asarray(xyz)
    if xyz.ndim != 2 or xyz.shape[1] != 3 or len(xyz) == 0:
        raise ValueError(f"expected a non-empty (N, 3) array of point coordinates, got shape {xyz.shape}")
    if not np.isfinite(xyz).all():
        raise ValueError("point coordinates contain non-finite values")
    return xyz


@dataclass(frozen=True)
class VoxelGrid:
    """The points of a cloud grouped by occupied voxel.

    Attributes:
        order: (N,) int64 point indices, grouped so that voxel v's points are
            ``order[starts[v]:starts[v] + counts[v]]``.
        starts: (V,) int64 first position of each voxel in ``order``.
        counts: (V,) int64 number of points in each voxel (>= 1).
    """

    order: np.ndarray
    starts: np.ndarray
    counts: np.ndarray

    @property
    def n_voxels(self) -> int:
        return len(self.counts)

    def representatives(self, rng: np.random.Generator) -> np.ndarray:
        """(V,) one uniformly random point index per occupied voxel."""
        offsets = np.floor(rng.random(self.n_voxels) * self.counts).astype(np.int64)
        # rng.random() < 1, but guard against a float rounding up to the count.
        return self.order[self.starts + np.minimum(offsets, self.counts - 1)]


def build_voxel_grid(xyz: np.ndarray, voxel_size: float, rng: np.random.Generator | None = None) -> VoxelGrid:
    """Group the points of ``xyz`` (N, 3) by cubic voxel of side ``voxel_size``.

    With ``rng``, the points within each voxel are in random order (otherwise in index order).
    Build once per room: drawing representatives from the grid is then linear in the voxels.
    """
    xyz = _check_xyz(xyz)
    if not voxel_size > 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    keys = np.floor((xyz - xyz.min(axis=0)) / voxel_size).astype(np.int64)
    dims = keys.max(axis=0) + 1
    if float(np.prod(dims.astype(np.float64))) >= 2.0 ** 62:
        raise ValueError(f"the cloud spans {dims.tolist()} voxels of {voxel_size}: too many to index; "
                         "are the coordinates in metres?")
    flat = (keys[:, 0] * dims[1] + keys[:, 1]) * dims[2] + keys[:, 2]
    shuffle = rng.permutation(len(xyz)) if rng is not None else np.arange(len(xyz))
    # A stable sort keeps the (shuffled) order of the points inside each voxel.
    order = shuffle[np.argsort(flat[shuffle], kind="stable")]
    sorted_keys = flat[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    counts = np.diff(np.r_[starts, len(order)])
    return VoxelGrid(order.astype(np.int64), starts.astype(np.int64), counts.astype(np.int64))


def voxel_subsample(xyz: np.ndarray, voxel_size: float, rng: np.random.Generator) -> np.ndarray:
    """(V,) indices of one random point per occupied voxel of ``xyz`` (N, 3) (training)."""
    return build_voxel_grid(xyz, voxel_size).representatives(rng)


def crop_nearest(xyz: np.ndarray, max_points: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of the ``max_points`` points nearest to a random point of ``xyz`` (N, 3), sorted;
    all N indices when N <= ``max_points``. PointNeXt's S3DIS training crop."""
    xyz = _check_xyz(xyz)
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    if len(xyz) <= max_points:
        return np.arange(len(xyz), dtype=np.int64)
    centre = xyz[rng.integers(len(xyz))]
    squared = np.square(xyz - centre).sum(axis=1)
    return np.sort(np.argpartition(squared, max_points - 1)[:max_points]).astype(np.int64)


def pad_by_resampling(indices: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``indices`` extended to ``size`` by repeating random members (PointNeXt's padding of
    small crops so that crops stack into a batch); unchanged when already ``size`` long."""
    indices = np.asarray(indices, dtype=np.int64)
    if len(indices) > size:
        raise ValueError(f"cannot pad {len(indices)} indices to fewer ({size})")
    if len(indices) == 0:
        raise ValueError("cannot pad an empty index array")
    if len(indices) == size:
        return indices
    return np.r_[indices, rng.choice(indices, size - len(indices))]


def whole_scene_subclouds(xyz: np.ndarray, voxel_size: float, rng: np.random.Generator) -> list[np.ndarray]:
    """Split a whole room into sub-clouds that together hold every point (whole-scene test).

    The points of each voxel are put in random order; sub-cloud i takes the i-th point of
    every voxel, or point ``i mod count`` of a voxel with fewer points. There are as many
    sub-clouds as the fullest voxel has points, so every point is in at least one, and each
    sub-cloud holds exactly one point per occupied voxel (like a voxel-subsampled room).

    Returns:
        list of (V,) int64 index arrays into ``xyz``.
    """
    grid = build_voxel_grid(xyz, voxel_size, rng)
    return [grid.order[grid.starts + i % grid.counts] for i in range(int(grid.counts.max()))]
