"""How well the pre-training visibility test (picat/pretrain/visibility.py) sees what the camera sees.

On the demo corpus's meshes (generated, normalised and sampled exactly as the pack step does,
viewed from the shards' 20 dodecahedron cameras), each object's DGCNN-style local centres
(farthest point samples of the cloud) are judged visible or hidden in every view by the cloud
z-buffer, and compared with exact ray casting against the mesh (a centre is hidden when the
segment from the camera to it crosses a triangle before it). Reports, per setting of the
z-buffer (resolution, window, tolerance): the fraction of centres kept, the true visible
fraction, and the agreement (precision: kept centres that are truly visible; recall: truly
visible centres that are kept).

Also times ``visible_centres`` on a pre-training batch (B = 32, N = 1024, L = 256).

    .venv/bin/python benchmarks/visibility.py --objects 40 --out results/benchmarks/visibility.json
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from picat.atomic import write_json_atomically
from picat.geometry import camera_to_world, dodecahedron_cameras
from picat.meshes import load_mesh, sample_surface
from picat.models.ops import farthest_point_sample
from picat.pretrain.visibility import DEPTH_TOLERANCE, WINDOW, default_resolution, visible_centres
from picat.stages.corpus import generate_demo_meshes
from picat.stages.pack import object_seed

# A centre whose first occluder lies less than this in front of it (world units) sits under a thin
# part of the same surface region (a plate's far face, a fold): it projects where that region
# does, so for the cell correspondence it is as good as visible.
THIN = 0.1


def occluder_depth(targets: np.ndarray, eye: np.ndarray, triangles: np.ndarray, slack: float = 1e-4) -> np.ndarray:
    """(M,) how far in front of each target the mesh first crosses the segment eye -> target.

    Moller-Trumbore against every triangle (T, 3, 3), along the ray; 0 where nothing crosses
    it before ``slack`` short of the target (its own triangle is hit at the target itself).
    A target is hidden when the result is > 0.
    """
    v0, edge1, edge2 = triangles[:, 0], triangles[:, 1] - triangles[:, 0], triangles[:, 2] - triangles[:, 0]
    depth = np.zeros(len(targets))
    for index, target in enumerate(targets):
        direction = target - eye
        length = np.linalg.norm(direction)
        direction = direction / length
        p = np.cross(direction, edge2)
        det = np.einsum("ij,ij->i", edge1, p)
        ok = np.abs(det) > 1e-12
        inv = np.where(ok, 1.0 / np.where(ok, det, 1.0), 0.0)
        s = eye - v0
        u = np.einsum("ij,ij->i", s, p) * inv
        q = np.cross(s, edge1)
        v = (q @ direction) * inv
        t = np.einsum("ij,ij->i", edge2, q) * inv
        hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0) & (t < length - slack)
        if hit.any():
            depth[index] = length - float(t[hit].min())
    return depth


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--objects", type=int, default=40, help="demo objects (the first of the corpus)")
    parser.add_argument("--seed", type=int, default=0, help="demo corpus seed (config.yaml demo.corpus.seed)")
    parser.add_argument("--n-points", type=int, default=1024)
    parser.add_argument("--centres", type=int, default=256, help="local centres per object (DGCNN: 256)")
    parser.add_argument("--views", type=int, default=5, help="views per object (of the 20)")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the numbers")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    views, projs = dodecahedron_cameras(2.5, 50.0, "y")
    rng = np.random.default_rng(0)
    started = time.time()
    clouds, centres, view_rows, occluders = [], [], [], []
    areas = []
    with tempfile.TemporaryDirectory() as folder:
        records = generate_demo_meshes(args.objects, args.seed, Path(folder), log=open("/dev/null", "w"))  # noqa: SIM115
        for number, record in enumerate(records):
            mesh = load_mesh(record.path)
            points, _ = sample_surface(mesh, args.n_points, object_seed(0, record.object_id))
            world = mesh.world_vertices()
            triangles = world[mesh.faces]
            areas.append(0.5 * np.linalg.norm(np.cross(triangles[:, 1] - triangles[:, 0],
                                                       triangles[:, 2] - triangles[:, 0]), axis=1).sum())
            picked = farthest_point_sample(torch.from_numpy(points)[None], args.centres)[0].numpy()
            for view in rng.choice(20, args.views, replace=False):
                eye = camera_to_world(views[view])[:3, 3]
                occluders.append(occluder_depth(points[picked].astype(np.float64), eye, triangles))
                clouds.append(points)
                centres.append(points[picked])
                view_rows.append(view)
            print(f"[visibility] {number + 1}/{len(records)} objects ray-cast, {time.time() - started:.0f} s",
                  file=sys.stderr, flush=True)
    points_t = torch.from_numpy(np.stack(clouds))
    centres_t = torch.from_numpy(np.stack(centres))
    view_t = torch.from_numpy(views[view_rows].astype(np.float32))
    proj_t = torch.from_numpy(projs[view_rows].astype(np.float32))
    occluder = np.stack(occluders)
    truths = {"strict": occluder == 0.0, "within_0.1": occluder <= THIN}
    default = default_resolution(args.n_points)
    settings = [(default, WINDOW, DEPTH_TOLERANCE)]
    settings += [(r, w, t) for r in (round(f * default) for f in (0.5, 0.75, 1.0, 1.5)) for w in (0, 1, 2)
                 for t in (0.1, 0.2, 0.3, 0.5) if (r, w, t) != settings[0]]
    rows = []
    for resolution, window, tolerance in settings:
        kept = visible_centres(centres_t, points_t, view_t, proj_t, resolution=resolution, window=window,
                               tolerance=tolerance).numpy()
        row = {"resolution": resolution, "window": window, "tolerance": tolerance, "kept_fraction": float(kept.mean())}
        for name, truth in truths.items():
            both = (kept & truth).sum()
            row[name] = {"precision": float(both / max(kept.sum(), 1)), "recall": float(both / max(truth.sum(), 1)),
                         "accuracy": float((kept == truth).mean())}
        rows.append(row)
        print(f"R {resolution:3d} w {window} tol {tolerance:.2f}: kept {row['kept_fraction']:.3f} " + " ".join(
            f"| {name}: P {row[name]['precision']:.3f} R {row[name]['recall']:.3f} acc {row[name]['accuracy']:.3f}"
            for name in truths), flush=True)
    # Cost on a pre-training batch, with the defaults.
    batch = min(32, len(points_t))
    args_step = (centres_t[:batch], points_t[:batch], view_t[:batch], proj_t[:batch])
    visible_centres(*args_step)
    repeats, tic = 20, time.perf_counter()
    for _ in range(repeats):
        visible_centres(*args_step)
    seconds = (time.perf_counter() - tic) / repeats
    print(f"visible_centres on B={batch}, N={args.n_points}, L={args.centres}: {1000 * seconds:.2f} ms "
          f"(1 CPU thread)", flush=True)
    result = {"objects": args.objects, "views_per_object": args.views, "n_points": args.n_points,
              "centres": args.centres, "mean_surface_area": float(np.mean(areas)),
              "true_visible_fraction": {name: float(truth.mean()) for name, truth in truths.items()}, "settings": rows,
              "ms_per_batch": 1000 * seconds, "batch": batch, "threads": 1}
    print(f"true visible fraction: strict {truths['strict'].mean():.3f}, occluder within {THIN} "
          f"{truths['within_0.1'].mean():.3f}; mean surface area {np.mean(areas):.2f}", flush=True)
    if args.out is not None:
        write_json_atomically(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
