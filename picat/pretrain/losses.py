"""The Pic@Point losses (paper eq. 1-3): local and global InfoNCE against image embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def global_infonce(points: Tensor, images: Tensor, temperature: float) -> Tensor:
    """Eq. 3: each global point embedding against the m global image embeddings of the batch.

    Args:
        points: (m, d) L2-normalised point-cloud embeddings z.
        images: (m, d) L2-normalised image embeddings q; row k belongs to the same object
            as points row k (the positive), the other rows are negatives.
        temperature: tau.

    Returns:
        Scalar mean loss over the m objects.
    """
    if points.shape != images.shape or points.ndim != 2:
        raise ValueError(f"points and images must both be (m, d), got {tuple(points.shape)} and {tuple(images.shape)}")
    logits = points @ images.T / temperature
    targets = torch.arange(len(points), device=points.device)
    return F.cross_entropy(logits, targets)


def local_infonce(points: Tensor, image_cells: Tensor, cells: Tensor, valid: Tensor, temperature: float) -> Tensor:
    """Eq. 1-2: each local point embedding against every cell of every image in the batch.

    Args:
        points: (m, L, d) L2-normalised local point embeddings z_l.
        image_cells: (m, G, d) L2-normalised local image embeddings q_ij, G = g*g cells
            (row-major, as :func:`picat.pretrain.correspondence.project_to_cells` numbers them).
        cells: (m, L) long, the positive cell of each local embedding in its own object's image.
        valid: (m, L) bool; False entries (centres outside the image) are left out.
        temperature: tau.

    Returns:
        Scalar mean loss over the valid local embeddings (0 with a zero gradient if none).
    """
    m, n_local, dim = points.shape
    if image_cells.ndim != 3 or image_cells.shape[0] != m or image_cells.shape[2] != dim:
        raise ValueError(f"image_cells must be (m={m}, G, d={dim}), got {tuple(image_cells.shape)}")
    if cells.shape != (m, n_local) or valid.shape != (m, n_local):
        raise ValueError(f"cells and valid must be (m, L) = {(m, n_local)}, got {tuple(cells.shape)}, {tuple(valid.shape)}")
    n_cells = image_cells.shape[1]
    queries = points[valid]  # (V, d)
    if len(queries) == 0:
        return points.sum() * 0.0
    objects = torch.arange(m, device=points.device)[:, None].expand(m, n_local)[valid]
    targets = objects * n_cells + cells[valid]  # index into the m * G negatives
    logits = queries @ image_cells.reshape(m * n_cells, dim).T / temperature
    return F.cross_entropy(logits, targets)
