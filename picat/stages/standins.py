"""The standins step: the demo suite's held-out benchmark data, written in the real datasets' layouts.

Writing the stand-ins as ModelNet40's PointNet HDF5 files and ScanObjectNN's h5 files means
the downstream steps read the demo exactly as they read the real datasets (same readers, same
code path); only the folder differs. Layout under ``out``:

    modelnet40_ply_hdf5_2048/   ply_data_{train,test}0.h5 (data, label, normal), shape_names.txt, *_files.txt
    h5_files/main_split/        {training,test}_objectdataset.h5 (OBJ_BG) and ..._augmentedrot_scale75.h5 (PB_T50_RS)
    h5_files/main_split_nobg/   {training,test}_objectdataset.h5 (OBJ_ONLY)
    h5_files/shape_names.txt    the demo's category names (the real ScanObjectNN has none; its 15 are built in)
    standins.json               what was generated, with which settings
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from picat.atomic import write_text_atomically
from picat.datasets import write_modelnet40_h5, write_scanobjectnn
from picat.demo.classification import clean_objects, scan_variants
from picat.demo.part_mesh import categories_of
from picat.demo.scanner import SCAN_VARIANTS

# picat's split names -> the files' (ScanObjectNN calls its train split "training").
SPLITS = ("train", "test")


def _shuffled(seed: int, *arrays: np.ndarray | None) -> list[np.ndarray | None]:
    """The same random permutation of the points of each cloud applied to every (n, N, ...) array.

    The generator emits a scan's object points before its background; the real files hold
    points in no meaningful order, and protocols that take "the first N points" (the SVM,
    fine-tuning's evaluation) must not get a biased subset.
    """
    reference = next(a for a in arrays if a is not None)
    rng = np.random.default_rng(seed)
    order = np.stack([rng.permutation(reference.shape[1]) for _ in range(reference.shape[0])])
    rows = np.arange(reference.shape[0])[:, None]
    return [None if a is None else a[rows, order] for a in arrays]


def build_standins(settings: dict[str, Any], out: Path, log: TextIO = sys.stderr) -> dict[str, Any]:
    """Generate every stand-in for both splits and write them under ``out``.

    Args:
        settings: the suite's ``standins`` block: train_per_category, test_per_category,
            n_points, seed, and optionally categories ("demo", the default: the 13 demo
            categories; "all": the 25 of ``picat.demo.part_mesh.ALL_CATEGORIES``), clean_yaw and
            scan_yaw ("canonical", the default, or "random": ``picat.demo.classification.YAW_MODES``).

    Returns:
        The summary written to ``out/standins.json``.
    """
    out = Path(out)
    clean_yaw, scan_yaw = settings.get("clean_yaw", "canonical"), settings.get("scan_yaw", "canonical")
    categories = categories_of(settings, "standins.categories")
    summary: dict[str, Any] = {"settings": settings, "datasets": {}}
    for split in SPLITS:
        per_category = settings["train_per_category" if split == "train" else "test_per_category"]
        started = time.time()
        clean = clean_objects(per_category, settings["n_points"], settings["seed"], split, categories, clean_yaw)
        points, = _shuffled(settings["seed"], np.concatenate([clean.points, clean.normals], axis=2))
        write_modelnet40_h5(out / "modelnet40_ply_hdf5_2048", split, points, clean.labels, clean.class_names)
        summary["datasets"][f"modelnet40/{split}"] = {"clouds": int(len(clean.labels)),
                                                      "seconds": time.time() - started}
        print(f"[standins] modelnet40 {split}: {len(clean.labels)} clean objects ({time.time() - started:.1f} s)",
              file=log, flush=True)
        started = time.time()
        # One scan of each object serves all three variants (the scan is the costly part).
        all_scans = scan_variants(SCAN_VARIANTS, per_category, settings["n_points"], settings["seed"], split,
                                     categories, scan_yaw)
        for variant, scans in all_scans.items():
            points, masks = _shuffled(settings["seed"], scans.points, scans.masks)
            write_scanobjectnn(out / "h5_files", variant, split, points, scans.labels, masks,
                               class_names=scans.class_names)
            background = float(1.0 - scans.masks.astype(bool).mean()) if scans.masks is not None else 0.0
            summary["datasets"][f"scanobjectnn_{variant}/{split}"] = {"clouds": int(len(scans.labels)),
                                                                     "background_share": background}
            print(f"[standins] scanobjectnn {variant} {split}: {len(scans.labels)} scans, "
                  f"{100 * background:.0f}% background points", file=log, flush=True)
        print(f"[standins] scans of the {split} split: {time.time() - started:.1f} s", file=log, flush=True)
    write_text_atomically(out / "standins.json", json.dumps(summary, indent=2, sort_keys=True))
    return summary
