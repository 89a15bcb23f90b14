"""Point-to-cell correspondence and rotation augmentation that keeps cameras consistent.

Torch counterparts of :mod:`picat.geometry` for training batches. Convention (the shards'):
clip = M_proj @ M_view @ [x, y, z, 1], ndc = clip[:3] / clip[3], u = (ndc_x + 1) / 2,
v = (1 - ndc_y) / 2. A local centre falls into cell (row, col) = (floor(g v), floor(g u)) of
the g x g feature map (g = 7 for ResNet-18 at 224x224), flattened as row * g + col.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

UP_AXES = {"x": 0, "y": 1, "z": 2}


def project_to_cells(centres: Tensor, view: Tensor, proj: Tensor, grid: int = 7) -> tuple[Tensor, Tensor]:
    """The feature-map cell under each local centre, and whether it is inside the image.

    Args:
        centres: (B, L, 3) world coordinates.
        view, proj: (B, 4, 4) M_view and M_proj of each object's view.
        grid: side g of the g x g feature map.

    Returns:
        cells (B, L) long in [0, g*g) (row * g + col; 0 where invalid) and valid (B, L) bool:
        False for centres behind the camera or projecting outside [0, 1)^2. Invalid centres
        are masked out of the local loss, never clamped onto a border cell.
    """
    if centres.ndim != 3 or centres.shape[-1] != 3:
        raise ValueError(f"centres must be (B, L, 3), got {tuple(centres.shape)}")
    homogeneous = torch.cat([centres, torch.ones_like(centres[..., :1])], dim=-1)
    clip = homogeneous @ (proj @ view).transpose(1, 2)
    w = clip[..., 3]
    in_front = w > 1e-9
    safe_w = torch.where(in_front, w, torch.ones_like(w))
    u = (clip[..., 0] / safe_w + 1.0) / 2.0
    v = (1.0 - clip[..., 1] / safe_w) / 2.0
    cols, rows = torch.floor(u * grid), torch.floor(v * grid)
    valid = in_front & (cols >= 0) & (cols < grid) & (rows >= 0) & (rows < grid)
    cells = torch.where(valid, rows * grid + cols, torch.zeros_like(rows)).long()
    return cells, valid


def rotations_about_up(angle: Tensor, up_axis: str) -> Tensor:
    """(B, 3, 3) rotations by ``angle`` (B,) radians about ``up_axis``, in ``angle``'s dtype."""
    if up_axis not in UP_AXES:
        raise ValueError(f"up_axis must be one of {sorted(UP_AXES)}, got {up_axis!r}")
    cos, sin = torch.cos(angle), torch.sin(angle)
    a, b = [axis for axis in range(3) if axis != UP_AXES[up_axis]]
    rotation = torch.eye(3, dtype=angle.dtype, device=angle.device).repeat(len(angle), 1, 1)
    rotation[:, a, a], rotation[:, a, b] = cos, -sin
    rotation[:, b, a], rotation[:, b, b] = sin, cos
    return rotation


def random_rotations(batch: int, mode: str, up_axis: str = "y", generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> Tensor:
    """Random rotation matrices for augmentation.

    Args:
        mode: "none" (identity), "up" (uniform angle about ``up_axis``) or "so3" (uniform
            over all rotations, from normalised Gaussian quaternions).

    Returns:
        (batch, 3, 3) rotation matrices.
    """
    if mode == "none":
        return torch.eye(3, dtype=dtype, device=device).expand(batch, 3, 3).clone()
    if mode == "up":
        angle = torch.rand(batch, generator=generator, dtype=torch.float64) * 2 * math.pi
        return rotations_about_up(angle, up_axis).to(dtype=dtype, device=device)
    if mode == "so3":
        q = torch.randn(batch, 4, generator=generator, dtype=torch.float64)
        w, x, y, z = (q / q.norm(dim=1, keepdim=True)).unbind(1)
        rotation = torch.stack([
            1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
            2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
            2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
        ], dim=1).reshape(batch, 3, 3)
        return rotation.to(dtype=dtype, device=device)
    raise ValueError(f"rotation mode must be 'none', 'up' or 'so3', got {mode!r}")


def rotate_with_cameras(points: Tensor, view: Tensor, rotation: Tensor) -> tuple[Tensor, Tensor]:
    """Rotate each cloud by R and move its camera along: p' = R p, M_view' = M_view R^-1.

    Then M_view' p' = M_view p: every point lands on the same pixel, and the pose encoding
    sees the camera relative to the rotated cloud.

    Args:
        points: (B, N, C) with xyz in the first 3 channels; with C = 6 the normals
            (channels 3:6) are rotated too.
        view: (B, 4, 4) M_view. rotation: (B, 3, 3).

    Returns:
        rotated points (B, N, C) and view matrices (B, 4, 4).
    """
    rotated = points.clone()
    rotated[..., :3] = points[..., :3] @ rotation.transpose(1, 2)
    if points.shape[-1] >= 6:
        rotated[..., 3:6] = points[..., 3:6] @ rotation.transpose(1, 2)
    inverse = torch.zeros_like(view)
    inverse[:, :3, :3] = rotation.transpose(1, 2)  # R^-1 = R^T for a rotation
    inverse[:, 3, 3] = 1.0
    return rotated, view @ inverse
