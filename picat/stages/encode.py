"""The encode step: the frozen 2D backbone's features of every view of a shard, cached once.

The 2D backbone is frozen and the renders are fixed, so its features are the same in every
epoch; computing them once per shard takes the image network out of the training loop.
Cache file (HDF5): ``local`` (n, V, C, g, g) and ``global`` (n, V, C) in float16 (or
float32), ``object_ids`` (n,) as in the shard, attribute ``image_backbone`` (JSON).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TextIO

import h5py
import numpy as np
import torch
from torch import nn

from picat.accelerator import autocast, prepare_device
from picat.atomic import atomic_path
from picat.shards import open_shard, read_strings, write_strings


@torch.no_grad()
def encode_shard(shard_path: Path, output: Path, encoder: nn.Module, batch_size: int = 40,
                 dtype: str = "float16", device: torch.device | str = "cpu", log: TextIO = sys.stderr,
                 amp: str = "fp32") -> None:
    """Write the feature cache of one shard.

    Args:
        encoder: frozen 2D backbone: ``encoder(images uint8 (B, H, W, 3)) -> (local (B, C, g, g),
            global (B, C))`` with a ``describe() -> dict`` method.
        dtype: "float16" (half the disk; enough for features that are only ever compared
            through normalised projections) or "float32".
        amp: the frozen network's precision (fp32, bf16 or auto: see :mod:`picat.accelerator`).
    """
    if dtype not in ("float16", "float32"):
        raise ValueError(f"dtype must be float16 or float32, got {dtype!r}")
    output = Path(output)
    device = torch.device(device)
    prepare_device(device)
    encoder = encoder.to(device).eval()
    started = time.time()
    with (
        atomic_path(output) as tmp,
        open_shard(shard_path) as shard,
        h5py.File(tmp, "w") as cache,
    ):
        images = shard["images"]
        n, n_views = images.shape[:2]
        flat_total, done = n * n_views, 0
        local_ds = global_ds = None
        for start in range(0, flat_total, batch_size):
            stop = min(flat_total, start + batch_size)
            rows = [(i // n_views, i % n_views) for i in range(start, stop)]
            batch = np.stack([images[r, v] for r, v in rows])
            with autocast(device, amp):
                local, pooled = encoder(torch.from_numpy(batch).to(device, non_blocking=True))
            local, pooled = local.float().cpu().numpy(), pooled.float().cpu().numpy()
            if local_ds is None:
                local_ds = cache.create_dataset("local", (n, n_views, *local.shape[1:]), dtype=dtype,
                                                chunks=(1, 1, *local.shape[1:]))
                global_ds = cache.create_dataset("global", (n, n_views, pooled.shape[1]), dtype=dtype)
            for (row, view), feature_map, vector in zip(rows, local, pooled, strict=True):
                local_ds[row, view] = feature_map
                global_ds[row, view] = vector
            done = stop
            print(f"[encode] {done}/{flat_total} views, {done / (time.time() - started):.1f} views/s", file=log,
                  flush=True)
        ids = read_strings(shard["object_ids"])
        write_strings(cache, "object_ids", ids)
        cache.attrs["image_backbone"] = json.dumps(encoder.describe(), sort_keys=True)
        cache.attrs["shard"] = str(shard_path)
