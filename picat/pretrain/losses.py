"""The Pic@Point losses (paper eq. 1-3): local and global InfoNCE against image embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

_IGNORED = -100  # the cross-entropy target of a centre outside its image


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
    return global_infonce_terms(points, images, temperature) / len(points)


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
    m, _, dim = points.shape
    if image_cells.ndim != 3 or image_cells.shape[0] != m or image_cells.shape[2] != dim:
        raise ValueError(f"image_cells must be (m={m}, G, d={dim}), got {tuple(image_cells.shape)}")
    total, count = local_infonce_terms(points, image_cells, cells, valid, temperature)
    return total / count.clamp_min(1)


def global_infonce_terms(points: Tensor, images: Tensor, temperature: float, first_positive: int = 0) -> Tensor:
    """Eq. 3 for a slice of the batch: the summed loss of ``points``' rows against all ``images``.

    For data-parallel training: a rank holds the point embeddings of its slice of the
    global batch and the gathered image embeddings of the whole global batch.

    Args:
        points: (m, d) this slice's point embeddings.
        images: (M, d) every image embedding of the global batch, M >= m (the negatives).
        first_positive: row of ``images`` that is the positive of ``points`` row 0 (row k's is
            ``first_positive + k``).

    Returns:
        Scalar sum (not mean) of the m rows' losses; the global-batch loss is the sum over
        all slices divided by M.
    """
    if points.ndim != 2 or images.ndim != 2 or points.shape[1] != images.shape[1]:
        raise ValueError(f"points (m, d) and images (M, d) must share d, "
                         f"got {tuple(points.shape)} and {tuple(images.shape)}")
    if not 0 <= first_positive <= len(images) - len(points):
        raise ValueError(f"positives {first_positive}..{first_positive + len(points) - 1} "
                         f"lie outside the {len(images)} images")
    logits = points @ images.T / temperature
    targets = torch.arange(first_positive, first_positive + len(points), device=points.device)
    return F.cross_entropy(logits, targets, reduction="sum")


def local_infonce_terms(points: Tensor, image_cells: Tensor, cells: Tensor, valid: Tensor, temperature: float,
                        first_object: int = 0) -> tuple[Tensor, Tensor]:
    """Eq. 1-2 for a slice of the batch: summed loss of its valid local embeddings, and their count.

    Args:
        points: (m, L, d) this slice's local point embeddings.
        image_cells: (M, G, d) every object's image cells in the global batch (the negatives).
        cells, valid: (m, L) as in :func:`local_infonce`.
        first_object: the global-batch row of this slice's object 0.

    Returns:
        (sum of the valid embeddings' losses, number of valid embeddings as a long tensor).
        The global-batch loss is the sum over slices divided by the total count. With no
        valid embedding the sum is 0 but still depends on ``points`` and ``image_cells``, so
        every rank's backward reaches the same collectives and parameters.
    """
    m, n_local, dim = points.shape
    if image_cells.ndim != 3 or image_cells.shape[2] != dim or not 0 <= first_object <= image_cells.shape[0] - m:
        raise ValueError(f"image_cells must be (M >= {first_object + m}, G, d={dim}), got {tuple(image_cells.shape)}")
    if cells.shape != (m, n_local) or valid.shape != (m, n_local):
        raise ValueError(f"cells and valid must be (m, L) = {(m, n_local)}, "
                         f"got {tuple(cells.shape)}, {tuple(valid.shape)}")
    n_cells = image_cells.shape[1]
    # Fixed shapes, no boolean indexing: every centre gets its logits and the invalid ones
    # are ignored by the cross-entropy (ignore_index), so the step never waits for the
    # device to learn how many centres are valid. With no valid centre the sum is 0 and
    # still depends on ``points`` and ``image_cells``, so every rank's backward reaches the
    # same collectives and parameters.
    objects = torch.arange(first_object, first_object + m, device=points.device)[:, None]
    targets = torch.where(valid, objects * n_cells + cells, _IGNORED)  # (m, L) index into the M * G negatives
    logits = points.reshape(m * n_local, dim) @ image_cells.reshape(-1, dim).T / temperature
    total = F.cross_entropy(logits, targets.reshape(-1), reduction="sum", ignore_index=_IGNORED)
    return total, valid.sum()
