"""Farthest point samples of every pre-training object, computed once per run.

Farthest point sampling is a loop of one step per picked point (about a dozen small kernels
each): 960 steps per forward for PointNeXt-S, 256 for DGCNN's local centres. Pre-training
only rotates each object's fixed cloud (the first ``n_points`` of its shard's samples), and a
rotation keeps distances, so FPS picks the same points in every epoch. :func:`object_samples`
runs it once per object, on the unrotated clouds in large batches, and
:func:`with_object_samples` hands the picks out with the dataset's items, for the backbone's
``forward_features(points, samples=...)``.

On the rotated cloud, FPS could differ only where two candidates are at distances equal up
to float rounding (a near-tie that the rotation's rounding may flip); either pick is then a
farthest point to within that rounding.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO, runtime_checkable

import numpy as np
import torch
from torch import Tensor

from picat.pretrain.data import ShardObjects

__all__ = ["SampledBackbone", "object_samples", "with_object_samples"]


@runtime_checkable
class SampledBackbone(Protocol):
    """A backbone whose farthest point samples can be computed ahead of its forward pass."""

    def sample_count(self, n_points: int) -> int:
        """Indices per cloud of ``n_points`` (0: the backbone does not sample)."""
        ...

    def sample_indices(self, points: Tensor) -> Tensor:
        """(B, N, 3+) clouds -> (B, sample_count(N)) long indices, for ``forward_features(samples=...)``."""
        ...


def object_samples(dataset: ShardObjects, backbone: object, device: torch.device, batch_size: int | None = None,
                   log: TextIO | None = None) -> np.ndarray | None:
    """Every object's farthest point samples for ``backbone``, on its unrotated cloud.

    Args:
        dataset: the pre-training objects (their clouds are read from the shards, xyz only).
        backbone: the point backbone; one that is not a :class:`SampledBackbone`, or samples
            nothing for these clouds, gets None.
        device: where to run FPS (the training device: the same arithmetic as in training).
        batch_size: objects per FPS pass; default 256 on a CPU, 2048 on an accelerator.
        log: where to report progress (stderr by default).

    Returns:
        (len(dataset), S) int16 indices (int32 for clouds over 32768 points), row i for
        object i, or None.
    """
    if not isinstance(backbone, SampledBackbone):
        return None
    count = backbone.sample_count(dataset.n_points)
    if count == 0:
        return None
    log = log if log is not None else sys.stderr
    batch_size = batch_size or (256 if device.type == "cpu" else 2048)
    # Indices are below n_points; int16 halves the memory of int32 (ShapeNet x 960 for PointNeXt-S: 100 MB).
    dtype = np.int16 if dataset.n_points <= np.iinfo(np.int16).max + 1 else np.int32
    out = np.empty((len(dataset), count), dtype=dtype)
    print(f"[pretrain] farthest point sampling of {len(dataset)} objects ({count} points each), once for the run",
          file=log, flush=True)
    started, done = time.time(), 0
    with torch.no_grad():
        for clouds in dataset.clouds(batch_size):
            picked = backbone.sample_indices(torch.from_numpy(clouds).to(device))
            if tuple(picked.shape) != (len(clouds), count):
                raise RuntimeError(f"sample_indices returned shape {tuple(picked.shape)}, expected "
                                   f"{(len(clouds), count)}")
            out[done:done + len(clouds)] = picked.cpu().numpy()
            done += len(clouds)
    print(f"[pretrain] farthest point samples ready in {time.time() - started:.1f} s "
          f"({out.nbytes / 2**20:.1f} MiB)", file=log, flush=True)
    return out


def with_object_samples(dataset: ShardObjects, backbone: object, device: torch.device,
                        log: TextIO | None = None) -> ShardObjects:
    """``dataset`` with every item carrying its object's samples (:func:`object_samples`), or
    ``dataset`` itself when the backbone samples nothing."""
    samples = object_samples(dataset, backbone, device, log=log)
    return dataset if samples is None else dataset.with_samples(samples)
