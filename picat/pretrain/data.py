"""Pre-training batches read lazily from the HDF5 shards (and their cached image features).

One random view per object per step (paper 4.1). The view of each object is drawn by the
training loop's own seeded generator and handed to the dataset with the index, so a run
resumed from a checkpoint sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import bisect
import copy
from collections.abc import Iterator, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from picat.shards import open_shard


class ShardObjects(Dataset):
    """All objects of a list of shards; items are addressed as (global index, view index).

    Files are opened on first use in each worker process (h5py handles do not survive a
    fork), and only the requested object's arrays are read.

    Args:
        shards: shard files (schema of :mod:`picat.shards`).
        features: for each shard, its cached image-feature file (``picat encode``), or None
            to return the rendered image itself (for encoding on the fly).
        n_points: points per cloud (the first n of the shard's random surface samples).
        normals: return xyz + normals (6 channels) instead of xyz.

    Attributes:
        samples: None, or (n_objects, S) int16/int32 farthest point samples of every object's
            cloud, handed out with each item (see :meth:`with_samples`).
    """

    def __init__(self, shards: Sequence[Path], features: Sequence[Path] | None, n_points: int,
                 normals: bool = False) -> None:
        if features is not None and len(features) != len(shards):
            raise ValueError(f"got {len(features)} feature files for {len(shards)} shards")
        self.shards = [Path(path) for path in shards]
        self.features = [Path(path) for path in features] if features is not None else None
        self.n_points, self.normals = n_points, normals
        counts = []
        for index, path in enumerate(self.shards):
            with open_shard(path) as shard:
                count, available = shard["points"].shape[:2]
                self.n_views = shard["view_matrices"].shape[1]
                ids = shard["object_ids"][()]
            if n_points > available:
                raise ValueError(f"{path}: n_points={n_points} but the shard holds {available} points per object")
            if self.features is not None:
                with h5py.File(self.features[index], "r") as cache:
                    if not np.array_equal(cache["object_ids"][()], ids):
                        raise ValueError(f"{self.features[index]}: object ids differ from its shard {path}; "
                                         "re-encode it")
            counts.append(count)
        self.offsets = np.concatenate([[0], np.cumsum(counts)]).tolist()
        self._handles: dict[Path, h5py.File] = {}
        self.samples: np.ndarray | None = None

    def __len__(self) -> int:
        return self.offsets[-1]

    def _file(self, path: Path) -> h5py.File:
        if path not in self._handles:
            self._handles[path] = h5py.File(path, "r")
        return self._handles[path]

    def clouds(self, batch_size: int) -> Iterator[np.ndarray]:
        """Every object's cloud (xyz only, as :meth:`__getitem__` reads it), in index order.

        Yields:
            (b, n_points, 3) float32 arrays of up to ``batch_size`` consecutive objects (a
            batch does not cross a shard).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        for path, first, end in zip(self.shards, self.offsets[:-1], self.offsets[1:], strict=True):
            with open_shard(path) as shard:
                for start in range(0, end - first, batch_size):
                    rows = shard["points"][start:min(start + batch_size, end - first), : self.n_points]
                    yield np.ascontiguousarray(rows, dtype=np.float32)

    def with_samples(self, samples: np.ndarray | None) -> ShardObjects:
        """A copy of this dataset whose items also carry ``samples`` (this one is unchanged).

        Args:
            samples: (len(self), S) integer array, row i for object i (e.g. farthest point
                samples, :func:`picat.pretrain.samples.object_samples`), or None for none.
        """
        if samples is not None and (samples.ndim != 2 or samples.shape[0] != len(self)
                                    or not np.issubdtype(samples.dtype, np.integer)):
            raise ValueError(f"samples must be an integer array with one row per object ({len(self)}), "
                             f"got {samples.dtype} {samples.shape}")
        other = copy.copy(self)
        other._handles = {}  # its own file handles
        other.samples = samples
        return other

    def locate(self, index: int) -> tuple[int, int]:
        """(shard number, row in that shard) of a global object index."""
        if not 0 <= index < len(self):
            raise IndexError(f"object index {index} out of range [0, {len(self)})")
        shard = bisect.bisect_right(self.offsets, index) - 1
        return shard, index - self.offsets[shard]

    def __getitem__(self, item: tuple[int, int]) -> dict[str, torch.Tensor]:
        """One object with one view.

        Returns:
            points (N, 3 or 6) float32, view (4, 4) and proj (4, 4) float32, and either
            image (H, W, 3) uint8 or image_local (C, g, g) and image_global (C,) float32;
            with :attr:`samples` set, also samples (S,) int16/int32, the object's row.
        """
        index, view = item
        shard_number, row = self.locate(index)
        shard = self._file(self.shards[shard_number])
        points = shard["points"][row, : self.n_points]
        if self.normals:
            points = np.concatenate([points, shard["normals"][row, : self.n_points]], axis=-1)
        sample = {
            "points": torch.from_numpy(np.ascontiguousarray(points, dtype=np.float32)),
            "view": torch.from_numpy(shard["view_matrices"][row, view].astype(np.float32)),
            "proj": torch.from_numpy(shard["proj_matrices"][row, view].astype(np.float32)),
        }
        if self.features is None:
            sample["image"] = torch.from_numpy(shard["images"][row, view])
        else:
            cache = self._file(self.features[shard_number])
            sample["image_local"] = torch.from_numpy(cache["local"][row, view].astype(np.float32))
            sample["image_global"] = torch.from_numpy(cache["global"][row, view].astype(np.float32))
        if self.samples is not None:
            sample["samples"] = torch.from_numpy(self.samples[index].copy())  # a copy: not a view of the whole array
        return sample

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_handles"] = {}  # reopen in the worker
        return state


class EpochSampler(Sampler):
    """Shuffled (object, view) pairs for one epoch, from a generator seeded by (seed, epoch).

    The order depends only on the seed, the epoch and the dataset size, so a resumed run
    replays the same batches. Data-parallel ranks split each global batch of this order
    (:class:`picat.pretrain.distributed.GlobalBatchSlices`).
    """

    def __init__(self, n_objects: int, n_views: int, seed: int) -> None:
        self.n_objects, self.n_views, self.seed, self.epoch = n_objects, n_views, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n_objects, generator=generator)
        views = torch.randint(0, self.n_views, (self.n_objects,), generator=generator)
        for index in order.tolist():
            yield index, int(views[index])

    def __len__(self) -> int:
        return self.n_objects
