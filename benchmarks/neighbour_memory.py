"""Peak memory and time of PointNeXt-S scene segmentation with the chunked neighbour search.

Two workloads, each measured in a fresh process (one per row):

* ``train``: one forward + backward of the real S3DIS network (:class:`PointNeXtSegmenter`
  with :func:`segmentation_encoder`'s encoder, radius 0.1, strides [1, 4, 4, 4, 4] as the
  config's ``downstream.semseg.encoder``, 13 classes, xyz + colours) on a batch of
  ``--batch`` random clouds of N points, for every N in ``--points``. Stride 1 is the stem (a
  per-point linear map); the first set abstraction queries N / 4 balls among the N points and
  the last decoder level finds the 3 nearest of N / 4 coarse points for each of the N: the
  two neighbour searches of N^2 / 4 pairs.
* ``room``: the whole-room test (:func:`picat.downstream.semseg.evaluate_scene_segmenter`,
  random-init model) on one synthetic room of ``--rooms`` points: points on the floor, ceiling
  and walls of a 10 x 8 x 3 m box (as a scan sees a room; ``--room-kind volume`` fills the
  box instead), random colours, labels ceiling/floor/wall. Each sub-cloud (one point per
  ``--voxel-size`` voxel, ``subcloud`` points) goes through the model whole.

Columns: ``baseline_mb`` (the process after the imports, model and inputs: resident memory on
the CPU, allocated device memory on CUDA), ``peak_mb`` (``ru_maxrss`` on the CPU,
``torch.cuda.max_memory_allocated`` on CUDA), ``extra_mb`` = peak - baseline, ``mb_per_1k``
= extra_mb per 1000 points of one cloud (train) or of one sub-cloud (room), and
``slope_mb_per_1k`` = the growth of extra_mb per 1000 more points since the previous train
row: constant when the memory grows linearly in N (the dense search grows as N^2); ``seconds``
of the measured call. ``--dense`` runs the pre-chunking
ball query and kNN instead (tests/test_ops.py keeps them as references), for comparison:
they hold every (centre, point) pair at once, 9 bytes per pair in ball query (float32
distance, int32 key, bool mask).

Measured (December 2026, 2-core AMD EPYC, quiet at the time, torch 2.14.1, float32, 2
threads, chunks of 2**24 elements; the default run, 5 minutes, then ``--dense --rooms 125000``)::

    workload     impl  points  subcloud  subclouds  extra_mb  mb_per_1k  slope_mb_per_1k  seconds
       train  chunked    3000      3000                121.8      40.62                      0.25
       train  chunked    6000      6000                233.7      38.95            37.30     0.69
       train  chunked   12000     12000                448.9      37.41            35.87     1.66
       train  chunked   24000     24000                718.0      29.92            22.43     3.83
        room  chunked  125000     26363         23     279.8      10.61                     51.46
        room  chunked  250000     26590         34     328.0      12.34                     74.25
        room  chunked  500000     26591         61     325.5      12.24                    126.45
       train    dense    3000      3000                139.0      46.34                      0.20
       train    dense    6000      6000                339.1      56.51            66.70     0.66
       train    dense   12000     12000               1099.7      91.64           126.77     3.71
       train    dense   24000     24000               3761.1     156.71           221.78    54.54
        room    dense  125000     26363         23    2172.9      82.42                    140.06

(batch 2 for train; baseline ~620-670 MB). The chunked search grows by a roughly constant
~30-37 MB per 1000 points (the network's activations, plus the work buffers until they reach
their 2**24-element cap); the dense one by ever more (its N^2 / 4 pairs), and the whole-room
test's memory depends on the sub-cloud, not on the room (``--voxel-size 0.04 --rooms 125000``:
7 sub-clouds of 88038 points, extra 736 MB, 126 s; dense would need ~17 GB for its first ball
query). Timings vary several fold with the machine's load.

Usage (from the repository root; the default run takes about 5 minutes on 2 quiet cores)::

    .venv/bin/python benchmarks/neighbour_memory.py --out results/benchmarks/neighbour_memory.csv
    .venv/bin/python benchmarks/neighbour_memory.py --points 3000 6000 --rooms --dense   # old dense ops
    python benchmarks/neighbour_memory.py --device cuda --voxel-size 0.04 --rooms 500000 1000000
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
ROOM_SIZE = (10.0, 8.0, 3.0)  # metres
COLUMNS = ["workload", "impl", "device", "points", "batch", "subcloud", "subclouds", "baseline_mb", "peak_mb",
           "extra_mb", "mb_per_1k", "slope_mb_per_1k", "seconds"]


def rss_mb() -> float:
    """Current resident set size of this process, in MiB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


def synthetic_room(n_points: int, kind: str, seed: int) -> Any:
    """A :class:`picat.datasets.s3dis.Room` of ``n_points`` in a 10 x 8 x 3 m box (area 5).

    ``surface``: uniform on the six faces (area-weighted), labelled ceiling / floor / wall;
    ``volume``: uniform in the box, labelled by height (a stress case: about one point per
    small voxel, so a sub-cloud holds nearly the whole room).
    """
    import numpy as np

    from picat.datasets.s3dis import Room

    rng = np.random.default_rng(seed)
    size = np.array(ROOM_SIZE)
    points = rng.random((n_points, 3)) * size
    if kind == "surface":
        # Faces: ceiling (z = 3), floor (z = 0), walls x = 0, x = 10, y = 0, y = 8.
        areas = np.array([size[0] * size[1]] * 2 + [size[1] * size[2]] * 2 + [size[0] * size[2]] * 2)
        face = rng.choice(6, n_points, p=areas / areas.sum())
        axis = np.array([2, 2, 0, 0, 1, 1])[face]
        points[np.arange(n_points), axis] = np.array([size[2], 0.0, 0.0, size[0], 0.0, size[1]])[face]
        labels = np.array([0, 1, 2, 2, 2, 2])[face]  # S3DIS_CLASSES order: ceiling, floor, wall
    else:
        z = points[:, 2]
        labels = np.where(z < 0.1, 1, np.where(z > size[2] - 0.1, 0, 2))
    colors = rng.integers(0, 256, (n_points, 3)).astype(np.float32)
    return Room("synthetic_room", 5, points.astype(np.float32), colors, labels.astype(np.int64))


def build_model(device: Any) -> Any:
    """The S3DIS PointNeXt-S of picat.stages.semseg, random initialisation (seed 0)."""
    import torch

    from picat.datasets.s3dis import S3DIS_CLASSES
    from picat.models.segmentation import PointNeXtSegmenter, segmentation_encoder

    encoder, _ = segmentation_encoder(None, radius=0.1, strides=(1, 4, 4, 4, 4), seed=0)
    torch.manual_seed(0)
    return PointNeXtSegmenter(encoder, len(S3DIS_CLASSES)).to(device)


def use_dense_ops() -> None:
    """Swap the pre-chunking dense ball query and kNN (tests/test_ops.py) into the network."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_ops import dense_ball_query_reference, dense_knn_reference

    import picat.models.pointnext as pointnext
    import picat.models.segmentation as segmentation

    pointnext.ball_query = dense_ball_query_reference
    segmentation.knn = dense_knn_reference


def child(arguments: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: one measurement; returns the row's figures."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(arguments["threads"])
    device = torch.device(arguments["device"])
    cuda = device.type == "cuda"
    if arguments["dense"]:
        use_dense_ops()
    model = build_model(device)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    def baseline() -> float:
        sync()
        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
            return torch.cuda.memory_allocated(device) / 2**20
        return rss_mb()

    row: dict[str, Any] = {}
    if arguments["workload"] == "train":
        batch, n_points = arguments["batch"], arguments["points"]
        generator = torch.Generator().manual_seed(1)
        xyz = (torch.rand(batch, n_points, 3, generator=generator) * torch.tensor([3.0, 3.0, 3.0])).to(device)
        colours = torch.randn(batch, n_points, 3, generator=generator).to(device)
        labels = torch.randint(0, 13, (batch, n_points), generator=generator).to(device)
        model.train()
        start_mb = baseline()
        started = time.perf_counter()
        logits = model(xyz, colours)
        F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1)).backward()
        sync()
        row["subcloud"] = n_points
    else:
        from picat.downstream.scenes import build_voxel_grid
        from picat.downstream.semseg import SemSegSettings, evaluate_scene_segmenter

        room = synthetic_room(arguments["points"], arguments["room_kind"], seed=2)
        settings = SemSegSettings(voxel_size=arguments["voxel_size"], test_area=5)
        row["subcloud"] = build_voxel_grid(room.points, settings.voxel_size, np.random.default_rng(0)).n_voxels
        start_mb = baseline()
        started = time.perf_counter()
        scores = evaluate_scene_segmenter(model, [room], settings, 0, device, io.StringIO())
        sync()
        row["subclouds"] = scores["n_subclouds"]
    row["seconds"] = time.perf_counter() - started
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else \
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    row.update(baseline_mb=start_mb, peak_mb=peak)
    return row


def measure(arguments: dict[str, Any]) -> dict[str, Any]:
    """One row, measured in a fresh interpreter."""
    result = subprocess.run([sys.executable, __file__, "--child", json.dumps(arguments)], capture_output=True,
                            text=True, check=False, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"the measurement {arguments} failed:\n{result.stderr[-3000:]}")
    row = json.loads(result.stdout.strip().splitlines()[-1])
    extra = row["peak_mb"] - row["baseline_mb"]
    return {"workload": arguments["workload"], "impl": "dense" if arguments["dense"] else "chunked",
            "device": arguments["device"], "points": arguments["points"],
            "batch": arguments["batch"] if arguments["workload"] == "train" else 1,
            "subcloud": row["subcloud"], "subclouds": row.get("subclouds", ""),
            "baseline_mb": round(row["baseline_mb"], 1), "peak_mb": round(row["peak_mb"], 1),
            "extra_mb": round(extra, 1), "mb_per_1k": round(extra / (row["subcloud"] / 1000), 2),
            "seconds": round(row["seconds"], 2)}


def format_table(rows: list[dict[str, Any]]) -> str:
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS}
    lines = ["  ".join(c.rjust(widths[c]) for c in COLUMNS)]
    lines += ["  ".join(str(r[c]).rjust(widths[c]) for c in COLUMNS) for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", type=int, nargs="*", default=[3000, 6000, 12000, 24000],
                        help="points per cloud of the train workload (none: skip it)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--rooms", type=int, nargs="*", default=[125000, 250000, 500000],
                        help="points per synthetic room of the whole-room test (none: skip it)")
    parser.add_argument("--room-kind", choices=["surface", "volume"], default="surface")
    parser.add_argument("--voxel-size", type=float, default=0.1,
                        help="sub-cloud voxel of the whole-room test (paper: 0.04; 0.1, the demo's, keeps the "
                             "CPU run short)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dense", action="store_true", help="the pre-chunking dense ball query and kNN")
    parser.add_argument("--out", type=Path, default=None, help="also write the table as CSV here")
    parser.add_argument("--child", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        sys.path.insert(0, str(REPO))
        print(json.dumps(child(json.loads(args.child))))
        return
    if min(args.points + args.rooms + [args.batch]) < 1 or not args.voxel_size > 0:
        parser.error("--points, --rooms, --batch and --voxel-size must be positive")
    common = {"device": args.device, "threads": args.threads, "dense": args.dense, "batch": args.batch,
              "voxel_size": args.voxel_size, "room_kind": args.room_kind}
    jobs = [{**common, "workload": "train", "points": n} for n in args.points]
    jobs += [{**common, "workload": "room", "points": n} for n in args.rooms]
    rows: list[dict[str, Any]] = []
    for job in jobs:
        row = measure(job)
        previous = rows[-1] if rows and rows[-1]["workload"] == row["workload"] == "train" else None
        row["slope_mb_per_1k"] = "" if previous is None or row["subcloud"] <= previous["subcloud"] else round(
            (row["extra_mb"] - previous["extra_mb"]) / ((row["subcloud"] - previous["subcloud"]) / 1000), 2)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    print(format_table(rows))
    if args.out is not None:
        sys.path.insert(0, str(REPO))
        from picat.atomic import write_text_atomically

        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        write_text_atomically(args.out, text.getvalue())


if __name__ == "__main__":
    main()
