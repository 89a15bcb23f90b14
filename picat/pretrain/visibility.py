"""Which local centres the camera sees: a z-buffer of the object's own point cloud.

The local loss matches each local centre to the feature-map cell it projects onto. A centre
on the far side of the object projects onto the same cell as the front surface that hides
it, so without a visibility test it is taught to look like a surface it is not part of.
:func:`visible_centres` decides, for a batch, which centres are seen.

Why the cloud and not the render: the shards keep each view's RGB image and its object mask
(:mod:`picat.shards`), but no depth map, and a mask says only whether a pixel shows the
object, not which surface. A z-buffer of the cloud needs nothing beyond the batch (the
points, M_view, M_proj), follows the augmentation rotation (cloud and camera rotate
together) and costs one scatter per batch.

The test: every cloud point is splatted into an R x R depth grid over the image (its camera
depth -z_cam, the minimum per pixel, by ``scatter_reduce(..., "amin")``); the grid is then
min-pooled over a (2w + 1)^2 window, which closes the holes between the samples of the front
surface; a centre is visible when it is in front of the camera, inside the image, and its
depth is at most the pooled minimum at its pixel plus a tolerance. Shapes are fixed (points
outside the image go to a discarded extra bin), nothing is read on the host, and the
arithmetic is float32 (float64 inputs stay float64) with autocast off and no matrix
products (so neither bf16 autocast nor TF32 changes a depth).

The defaults, for the corpus's clouds (objects scaled into the unit sphere, N surface samples,
cameras at distance 2.5 with a 50 degree field of view, which the unit sphere fills): the
image spans 2 * 2.5 * tan(25 deg) = 2.33 world units at the object's centre, and N samples
of a surface of area A lie about sqrt(A / N) apart (A is 6.0 on average for the demo
objects, 12.6 for the unit sphere itself: 0.077 to 0.11 units at N = 1024).
:func:`default_resolution` is R = round(sqrt(N)) (32 for 1024 points): a pixel (0.073 units)
is about one sample spacing, so the 3 x 3 window (``WINDOW = 1``, 0.22 units at the centre's
depth, 0.13 at the near side of the unit sphere) usually holds a sample of a front surface,
and a point behind it is caught.
``DEPTH_TOLERANCE = 0.2`` world units is how much a surface seen at up to 60 degrees from
face-on rises across the window's radius (1.5 pixels, 0.11 units; tan 60 = 1.7), and stays
below the depth of a convex part's far side (0.5-2 units). A plate thinner than the
tolerance keeps its far face, which projects where the near face does.

Measured against exact ray casting (benchmarks/visibility.py, N = 1024, 256 farthest point
centres). On 40 demo objects x 5 views, 36 % of the centres are strictly visible and 54 %
have no occluder more than 0.1 in front of them (the rest lie under a thin part or a fold,
where the far face projects where the near one does); the defaults keep 46 %, of which 87 %
are in that second set, and they keep 74 % of it (80 % of the centres judged right). On a
sphere, a box and a cylinder 90, 83 and 86 % are judged right (a one-off check). Tolerances of 0.3 keep more
(86 % of the set) at a lower precision (77 %); no window, or finer grids, let far sides
through the sample gaps of sparse (large) surfaces, since the near side of an object, closer
to the camera, has smaller pixels; larger windows hide the rims of the near side.
Details: docs/pretraining.md, "Occlusion".
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DEPTH_TOLERANCE", "WINDOW", "default_resolution", "camera_depth_and_uv", "visible_centres"]

DEPTH_TOLERANCE = 0.2  # world units; objects fill the unit sphere (see the module docstring)
WINDOW = 1  # pooling radius in pixels: a (2 * WINDOW + 1)^2 neighbourhood


def default_resolution(n_points: int) -> int:
    """The z-buffer's side R for clouds of ``n_points``: round(sqrt(N)), a pixel about one sample spacing."""
    if n_points < 1:
        raise ValueError(f"n_points must be positive, got {n_points}")
    return max(1, round(math.sqrt(n_points)))


def _transform(xyz: Tensor, matrix: Tensor) -> Tensor:
    """(B, M, 3) x (B, 4, 4) -> (B, M, 4) homogeneous matrix @ [x, y, z, 1], as products and sums
    (no matmul: on CUDA a float32 matmul may run in TF32, a 10-bit mantissa)."""
    rows = matrix[:, None, :, :3] * xyz[:, :, None, :]  # (B, M, 4, 3)
    return rows.sum(-1) + matrix[:, None, :, 3]


def camera_depth_and_uv(xyz: Tensor, view: Tensor, proj: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Camera depth, image position and in-front flag of points (the shards' convention).

    Args:
        xyz: (B, M, 3) world coordinates. view, proj: (B, 4, 4) M_view and M_proj.

    Returns:
        depth (B, M) = -z_cam (OpenGL cameras look down -z), uv (B, M, 2) with u left to
        right and v top to bottom, in [0, 1) inside the image (arbitrary where not in front),
        and in_front (B, M) bool (clip w > 0).
    """
    camera = _transform(xyz, view)
    clip = _transform(camera[..., :3], proj)
    w = clip[..., 3]
    in_front = w > 1e-9
    safe_w = torch.where(in_front, w, torch.ones_like(w))
    uv = torch.stack([(clip[..., 0] / safe_w + 1.0) / 2.0, (1.0 - clip[..., 1] / safe_w) / 2.0], dim=-1)
    return -camera[..., 2], uv, in_front


def _pixels(uv: Tensor, in_front: Tensor, resolution: int) -> tuple[Tensor, Tensor]:
    """Flat pixel index (row * R + col; R * R where outside) and whether inside the R x R image."""
    cols, rows = torch.floor(uv[..., 0] * resolution), torch.floor(uv[..., 1] * resolution)
    inside = in_front & (cols >= 0) & (cols < resolution) & (rows >= 0) & (rows < resolution)
    flat = torch.where(inside, rows * resolution + cols, torch.full_like(rows, resolution * resolution))
    return flat.long(), inside


def visible_centres(centres: Tensor, points: Tensor, view: Tensor, proj: Tensor, *, resolution: int | None = None,
                    window: int = WINDOW, tolerance: float = DEPTH_TOLERANCE) -> Tensor:
    """Whether each local centre is visible in its object's view, judged by the cloud's z-buffer.

    Args:
        centres: (B, L, 3) world coordinates of the local centres.
        points: (B, N, 3+) the clouds (xyz in the first 3 channels), in the same frame as
            ``centres`` and the cameras.
        view, proj: (B, 4, 4) M_view and M_proj of each object's view.
        resolution: side R of the depth grid; default :func:`default_resolution` of N.
        window: the z-buffer is min-pooled over (2 * window + 1)^2 pixels before the test.
        tolerance: world units a centre may lie behind the nearest point of its window and
            still count as visible.

    Returns:
        (B, L) bool: in front of the camera, inside the image, and not behind the cloud's
        nearest surface by more than ``tolerance``. Computed without gradients.
    """
    if centres.ndim != 3 or centres.shape[-1] != 3:
        raise ValueError(f"centres must be (B, L, 3), got {tuple(centres.shape)}")
    if points.ndim != 3 or points.shape[-1] < 3 or points.shape[0] != centres.shape[0]:
        raise ValueError(f"points must be (B={centres.shape[0]}, N, 3+), got {tuple(points.shape)}")
    batch = centres.shape[0]
    if view.shape != (batch, 4, 4) or proj.shape != (batch, 4, 4):
        raise ValueError(f"view and proj must be (B={batch}, 4, 4), got {tuple(view.shape)}, {tuple(proj.shape)}")
    if window < 0 or tolerance < 0:
        raise ValueError(f"window and tolerance must be >= 0, got {window}, {tolerance}")
    resolution = default_resolution(points.shape[1]) if resolution is None else resolution
    if resolution < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    dtype = torch.promote_types(centres.dtype, torch.float32)
    with torch.no_grad(), torch.autocast(device_type=centres.device.type, enabled=False):
        centres, points = centres.detach().to(dtype), points[..., :3].detach().to(dtype)
        view, proj = view.detach().to(dtype), proj.detach().to(dtype)
        depth, uv, in_front = camera_depth_and_uv(points, view, proj)
        flat, inside = _pixels(uv, in_front, resolution)
        infinity = torch.full((), math.inf, dtype=dtype, device=depth.device)
        zbuffer = torch.full((batch, resolution * resolution + 1), math.inf, dtype=dtype, device=depth.device)
        zbuffer = zbuffer.scatter_reduce(1, flat, torch.where(inside, depth, infinity), "amin", include_self=True)
        grid = zbuffer[:, :-1].reshape(batch, 1, resolution, resolution)
        # Min-pooling as max-pooling of -depth; the implicit padding is -inf (= no point).
        nearest = -F.max_pool2d(-grid, 2 * window + 1, stride=1, padding=window).reshape(batch, -1)
        centre_depth, centre_uv, centre_in_front = camera_depth_and_uv(centres, view, proj)
        centre_flat, centre_inside = _pixels(centre_uv, centre_in_front, resolution)
        front = nearest.gather(1, centre_flat.clamp_max(resolution * resolution - 1))
        return centre_inside & (centre_depth <= front + tolerance)
