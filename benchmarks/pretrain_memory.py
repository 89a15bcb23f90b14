"""Peak memory of a pre-training job as a function of the number of shards it reads.

For every K in ``--shard-counts``, writes K synthetic shards in the real layouts (HDF5 shard +
its image-feature cache with the demo's EfficientNet-Lite0 shape, 1280 x 7 x 7 float16 per
view) -- ``--objects-per-shard`` objects each (the corpus grows with K), or ``--total-objects``
cut into K shards (the same corpus, hence the same steps per epoch, in more files) -- runs one
pre-training job over them in a fresh process and reports:

- ``peak_rss_mb``: the job's peak resident memory (``ru_maxrss``; the median of ``--repeats`` jobs),
- ``baseline_rss_mb``: its resident memory after the imports and model set-up, before any
  shard is opened,
- ``handles_mb_per_shard``: the resident memory that opening and reading one item of each
  of the K shard/cache pairs adds, divided by K (the per-open-handle cost),
- ``data_mb``: what the K shards and caches hold on disk.

A reader that loaded its shards would grow with ``data_mb``; ``ShardObjects`` reads one
object's arrays per item, so the peak grows only by the per-handle cost.

Usage (small and quick; run it under ``nice``)::

    python benchmarks/pretrain_memory.py --shard-counts 1 2 4 8 16 --objects-per-shard 16
    python benchmarks/pretrain_memory.py --shard-counts 1 2 4 8 16 --total-objects 64
"""

from __future__ import annotations

import argparse
import io
import json
import resource
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
FEATURE_CHANNELS = 1280  # EfficientNet-Lite0's last feature map, as the demo's caches hold
GRID = 7
VIEWS = 20


def rss_mb() -> float:
    """Current resident set size of this process, in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def write_shard_pair(shard: Path, cache: Path, n_objects: int, n_points: int, seed: int) -> None:
    """One synthetic shard (random clouds, blank renders) and its feature cache (random features)."""
    import h5py

    from picat.geometry import dodecahedron_cameras
    from picat.shards import ShardObject, ShardWriter, write_strings

    rng = np.random.default_rng(seed)
    views, projs = dodecahedron_cameras(2.5, 50.0)
    ids = [f"obj_{seed:03d}_{i:04d}" for i in range(n_objects)]
    blank = np.full((VIEWS, 224, 224, 3), 255, np.uint8)  # compresses to nearly nothing; never read with caches
    with ShardWriter(shard, {"suite": "memory"}) as writer:
        for object_id in ids:
            points = rng.normal(size=(n_points, 3)) * 0.3
            points /= max(1.0, np.linalg.norm(points, axis=1).max())
            normals = rng.normal(size=(n_points, 3))
            normals /= np.linalg.norm(normals, axis=1, keepdims=True)
            writer.add(ShardObject(object_id, "toy", "-", points.astype(np.float32), normals.astype(np.float32), blank,
                                   np.zeros((VIEWS, 224, 224), bool), views, projs, np.eye(4)))
    with h5py.File(cache, "w") as out:
        local = out.create_dataset("local", (n_objects, VIEWS, FEATURE_CHANNELS, GRID, GRID), dtype="float16",
                                   chunks=(1, 1, FEATURE_CHANNELS, GRID, GRID))
        for row in range(n_objects):
            local[row] = rng.standard_normal((VIEWS, FEATURE_CHANNELS, GRID, GRID), dtype=np.float32)
        out.create_dataset("global", data=rng.standard_normal((n_objects, VIEWS, FEATURE_CHANNELS)).astype("float16"))
        write_strings(out, "object_ids", ids)
        out.attrs["image_backbone"] = json.dumps({"name": "efficientnet_lite0", "weights": "imagenet"}, sort_keys=True)


def settings_of(config_path: Path, epochs: int) -> dict:
    """The demo suite's pre-training block, with ``epochs`` epochs and no worker processes."""
    import yaml

    settings = yaml.safe_load(config_path.read_text())["demo"]["pretrain"]
    return {**settings, "epochs": epochs, "num_workers": 0}


def child(arguments: dict) -> dict:
    """Run in a fresh process: one pre-training job over the given shards; returns the figures."""
    import torch

    from picat.pretrain.data import ShardObjects
    from picat.stages.pretrain import run_pretraining

    torch.set_num_threads(arguments["threads"])
    shards, caches = [Path(p) for p in arguments["shards"]], [Path(p) for p in arguments["caches"]]
    settings = arguments["settings"]
    # Build one backbone first, so that the baseline holds torch and the model code.
    from picat.models.factory import build_point_backbone

    build_point_backbone(arguments["backbone"], dict(settings[arguments["backbone"]]), False, "y")
    baseline = rss_mb()
    # Per-handle cost: open every shard/cache pair and read one item from each.
    dataset = ShardObjects(shards, caches, settings["n_points"])
    for shard in range(len(shards)):
        dataset[(dataset.offsets[shard], 0)]
    handles = (rss_mb() - baseline) / len(shards)
    del dataset
    run_pretraining(shards, caches, Path(arguments["out"]), arguments["backbone"], "full", 0, settings, "y", "memory",
                    device="cpu", log=io.StringIO())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"baseline_rss_mb": round(baseline, 1), "handles_mb_per_shard": round(handles, 2),
            "peak_rss_mb": round(peak, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shard-counts", type=int, nargs="+", default=[1, 2, 4, 8])
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--objects-per-shard", type=int, default=16, help="objects in each shard (default 16)")
    sizes.add_argument("--total-objects", type=int, default=None, help="objects of all K shards together")
    parser.add_argument("--backbone", choices=["dgcnn", "pointnext"], default="dgcnn")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="jobs per K (the peak varies by tens of MB run to run)")
    parser.add_argument("--config", type=Path, default=REPO / "config.yaml", help="its demo.pretrain block is used")
    parser.add_argument("--work-dir", type=Path, default=None, help="where the shards go (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return
    settings = settings_of(args.config, args.epochs)

    def objects_per_shard(count: int) -> int:
        return args.objects_per_shard if args.total_objects is None else args.total_objects // count

    if min(args.shard_counts) < 1 or min(objects_per_shard(count) for count in args.shard_counts) < 1:
        parser.error("--shard-counts and the objects per shard must be positive")
    if min(count * objects_per_shard(count) for count in args.shard_counts) < settings["batch_size"]:
        parser.error(f"every run needs at least one batch ({settings['batch_size']} objects)")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="picat_memory_"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        rows = []
        for count in sorted(args.shard_counts):
            shards = [work / f"k{count}_shard_{index:05d}.h5" for index in range(count)]
            caches = [work / f"k{count}_features_{index:05d}.h5" for index in range(count)]
            for index, (shard, cache) in enumerate(zip(shards, caches, strict=True)):
                write_shard_pair(shard, cache, objects_per_shard(count), settings["n_points"], seed=index)
            arguments = {"shards": [str(p) for p in shards], "caches": [str(p) for p in caches],
                         "settings": settings, "backbone": args.backbone, "threads": args.threads,
                         "out": str(work / f"run_{count}" / "checkpoint.pt")}
            repeats = []
            for _ in range(max(1, args.repeats)):
                result = subprocess.run([sys.executable, __file__, "--child", json.dumps(arguments)],
                                        capture_output=True, text=True, check=False)
                if result.returncode != 0:
                    raise SystemExit(f"the job over {count} shards failed:\n{result.stderr[-3000:]}")
                repeats.append(json.loads(result.stdout.strip().splitlines()[-1]))
            figures = {key: round(float(np.median([r[key] for r in repeats])), 2) for key in repeats[0]}
            if len(repeats) > 1:
                figures["peak_rss_mb_range"] = [min(r["peak_rss_mb"] for r in repeats),
                                                max(r["peak_rss_mb"] for r in repeats)]
            data_mb = sum(p.stat().st_size for p in shards + caches) / 2**20
            rows.append({"shards": count, "objects": count * objects_per_shard(count), "data_mb": round(data_mb, 1),
                         **figures})
            print(json.dumps(rows[-1]), flush=True)
            for path in shards + caches:
                path.unlink()
        if args.json:
            args.json.write_text(json.dumps({"backbone": args.backbone, "settings": settings, "rows": rows}, indent=2))
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
