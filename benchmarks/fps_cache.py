"""Pre-training step time with farthest point sampling in every step vs computed once per object.

Pre-training only rotates each object's fixed cloud, so :mod:`picat.pretrain.samples`
computes the backbone's FPS picks once per run and the steps take them as ``samples``. This
script times full training steps (``step_loss`` + backward + Adam) at paper sizes, side by side
in one process, steps of the modes interleaved so that a change in machine load hits all alike:

* ``before``: FPS in every step, as the code was before the cache (for DGCNN, its former
  per-step loop, reproduced below; PointNeXt's FPS is unchanged);
* ``uncached`` (DGCNN only): FPS in every step through :func:`picat.models.ops.farthest_point_sample`,
  which DGCNN now calls when it gets no samples;
* ``after``: the cached picks, computed once from the unrotated clouds.

Each mode trains its own copy of the same initial model on the same batch and rotations, so
their losses must agree step for step: exactly where the rotated and the unrotated clouds
give the same picks, and to float tolerance where a near-tie (two candidates at distances
equal up to rounding) flips a pick. The table gives the first step's losses (same weights),
the largest difference over all steps, and how many clouds' picks the first rotation changed.
"FPS before" / "FPS now" time the FPS of one step alone (the per-step cost the cache removes),
as it was and through ``picat.models.ops``; they are steadier than whole steps on a busy machine.

Sizes: batch 32, 1024 points, PointNeXt-S default, DGCNN k=20 / emb 1024 / 256 local
centres, latent 512, pose 64, cached image features 512 x 7 x 7 (random: the cost does not
depend on them), 2 threads.

    python benchmarks/fps_cache.py                      # both backbones, 1 warm-up + 3 steps
    python benchmarks/fps_cache.py --backbones pointnext --repeats 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

import picat.models.dgcnn as dgcnn_module
from picat.geometry import dodecahedron_cameras
from picat.models.factory import build_point_backbone
from picat.pretrain.correspondence import random_rotations
from picat.pretrain.engine import TrainSettings, step_loss
from picat.pretrain.model import PicAtPoint


@torch.no_grad()
def former_dgcnn_fps(xyz: Tensor, n_samples: int) -> Tensor:
    """DGCNN's per-step FPS before this change (picat/models/dgcnn.py at 2cc5909), verbatim."""
    batch, n_points, _ = xyz.shape
    if not 1 <= n_samples <= n_points:
        raise ValueError(f"cannot sample {n_samples} points from clouds of {n_points}")
    picked = torch.empty(batch, n_samples, dtype=torch.long, device=xyz.device)
    nearest = torch.full((batch, n_points), float("inf"), dtype=xyz.dtype, device=xyz.device)
    current = torch.zeros(batch, dtype=torch.long, device=xyz.device)
    rows = torch.arange(batch, device=xyz.device)
    for i in range(n_samples):
        picked[:, i] = current
        dist = (xyz - xyz[rows, current].unsqueeze(1)).square().sum(-1)
        nearest = torch.minimum(nearest, dist)
        current = nearest.argmax(-1)
    return picked


@contextmanager
def dgcnn_fps(function: Callable[[Tensor, int], Tensor]) -> Iterator[None]:
    """Run DGCNN's local-centre FPS through ``function`` inside the block."""
    current = dgcnn_module._farthest_point_sample
    dgcnn_module._farthest_point_sample = function
    try:
        yield
    finally:
        dgcnn_module._farthest_point_sample = current


def measure(backbone_name: str, batch: int, points: int, warmup: int, repeats: int) -> dict:
    """Median step seconds and per-step losses of each mode for one backbone."""
    torch.manual_seed(0)
    options = {"k": 20, "emb_dims": 1024, "local_centres": 256} if backbone_name == "dgcnn" else {}
    model = PicAtPoint(build_point_backbone(backbone_name, options), 512, "full", 512, 64)
    views, projs = dodecahedron_cameras(2.5, 50.0)
    data = {
        "points": torch.randn(batch, points, 3, generator=torch.Generator().manual_seed(1)) * 0.4,
        "view": torch.tensor(views[:1], dtype=torch.float32).expand(batch, 4, 4).clone(),
        "proj": torch.tensor(projs[:1], dtype=torch.float32).expand(batch, 4, 4).clone(),
        "image_local": torch.randn(batch, 512, 7, 7),
        "image_global": torch.randn(batch, 512),
    }
    samples = model.backbone.sample_indices(data["points"]).to(torch.int16)  # as the dataset stores them
    modes = ["before", "uncached", "after"] if backbone_name == "dgcnn" else ["before", "after"]
    runs = {}
    for mode in modes:
        copy_ = copy.deepcopy(model)
        optimizer = torch.optim.Adam([{"params": copy_.point_parameters(), "lr": 1e-3},
                                      {"params": copy_.image_parameters(), "lr": 5e-5}], weight_decay=1e-6)
        runs[mode] = {"model": copy_, "optimizer": optimizer, "times": [], "losses": []}
    settings = TrainSettings(epochs=1, batch_size=batch)
    changed = 0
    for step in range(warmup + repeats):
        rotation = random_rotations(batch, "so3", generator=torch.Generator().manual_seed(step))
        if step == 0:  # clouds whose FPS on the rotated cloud differs from the cached picks
            rotated = data["points"] @ rotation.transpose(1, 2)
            fps_now, now = timed(model.backbone.sample_indices, rotated)
            changed = int((now != samples.long()).any(dim=1).sum())
            with dgcnn_fps(former_dgcnn_fps):
                fps_before = timed(model.backbone.sample_indices, rotated)[0]
        for mode in modes:
            run = runs[mode]
            given = {**data, "samples": samples} if mode == "after" else data
            fps = former_dgcnn_fps if mode == "before" else dgcnn_module._farthest_point_sample
            started = time.perf_counter()
            with dgcnn_fps(fps):
                losses = step_loss(run["model"], given, rotation, settings)
            run["optimizer"].zero_grad(set_to_none=True)
            losses["objective"].backward()
            run["optimizer"].step()
            elapsed = time.perf_counter() - started
            if step >= warmup:
                run["times"].append(elapsed)
            run["losses"].append(float(losses["loss"].detach()))
    results = {mode: {"step_s": statistics.median(run["times"]), "losses": run["losses"]} for mode, run in runs.items()}
    return {"backbone": backbone_name, "fps_before_s": fps_before, "fps_now_s": fps_now, "changed": changed,
            **results}


def timed(function: Callable[[Tensor], Tensor], argument: Tensor) -> tuple[float, Tensor]:
    """(seconds, result) of one call."""
    started = time.perf_counter()
    result = function(argument)
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbones", nargs="+", default=["pointnext", "dgcnn"], choices=["pointnext", "dgcnn"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.points} points, "
          f"median of {args.repeats} steps after {args.warmup} warm-up; losses of the first step")
    print(f"{'backbone':9s} {'before s/step':>13s} {'uncached s/step':>15s} {'after s/step':>12s} "
          f"{'loss before':>12s} {'loss after':>12s} {'max |dloss|':>11s} {'other picks':>11s} "
          f"{'FPS before':>10s} {'FPS now':>8s}")
    for name in args.backbones:
        row = measure(name, args.batch, args.points, args.warmup, args.repeats)
        before, after = row["before"], row["after"]
        uncached = f"{row['uncached']['step_s']:15.3f}" if "uncached" in row else f"{'-':>15s}"
        worst = max(abs(a - b) for mode in ("before", "uncached") if mode in row
                    for a, b in zip(row[mode]["losses"], after["losses"], strict=True))
        print(f"{name:9s} {before['step_s']:13.3f} {uncached} {after['step_s']:12.3f} "
              f"{before['losses'][0]:12.6f} {after['losses'][0]:12.6f} {worst:11.2e} "
              f"{row['changed']:4d} of {args.batch:<3d} {row['fps_before_s']:9.3f}s {row['fps_now_s']:7.3f}s",
              flush=True)


if __name__ == "__main__":
    main()
