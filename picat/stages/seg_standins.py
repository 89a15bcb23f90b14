"""The seg-standins step: the demo suite's held-out segmentation benchmarks, written in the real layouts.

Writing the stand-ins as ShapeNetPart's and S3DIS's genuine files means the segmentation
steps read the demo exactly as they read the real datasets (same readers, same code path);
only the folder differs. Layout under ``out_dir``:

    shapenetcore_partanno_segmentation_benchmark_v0_normal/   the ShapeNetPart stand-in (picat.demo.parts)
    Stanford3dDataset_v1.2_Aligned_Version/                   the S3DIS stand-in (picat.demo.rooms)
    seg_standins.json                                         what was generated, with which settings

``build_seg_standins`` writes both into one folder atomically, from a settings block (see
``check_settings``).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from picat.atomic import atomic_path
from picat.demo.parts import (
    PART_CATEGORIES,
    PART_SPLITS,
    SHAPENETPART_LAYOUT,
    check_part_categories,
    write_shapenetpart_into,
)
from picat.demo.rooms import S3DIS_LAYOUT, check_room_arguments, write_s3dis_into
from picat.demo.seeding import check_int

SUMMARY_FILE = "seg_standins.json"

# settings block: key -> required; see check_settings.
_PART_KEYS = {"train_per_category": True, "test_per_category": True, "n_points": True, "val_per_category": False,
              "categories": False}
_ROOM_KEYS = {"areas": True, "rooms_per_area": True, "points_per_m2": True}
_TOP_KEYS = {"part": True, "rooms": True, "seed": True}


def _check_keys(block: Any, keys: Mapping[str, bool], where: str) -> Mapping[str, Any]:
    if not isinstance(block, Mapping):
        raise ValueError(f"{where} must be a mapping with keys {sorted(keys)}, got {type(block).__name__}")
    unknown = sorted(set(block) - set(keys))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(keys)}")
    missing = sorted(k for k, required in keys.items() if required and k not in block)
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}")
    return block


def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the seg stand-in settings block; return it normalised (defaults filled in).

    The block::

        seed: 0                      # dataset seed (>= 0)
        part:                        # ShapeNetPart stand-in
          train_per_category: 12     # shapes per category (>= 1)
          test_per_category: 6       # (>= 1)
          n_points: 1024             # points per shape file
          val_per_category: 0        # optional (>= 0, default 0: empty val list)
          categories: [...]          # optional, keys of PART_CATEGORIES (default all 7)
        rooms:                       # S3DIS stand-in
          areas: [1, 2, 3, 5]        # S3DIS area numbers (1..6)
          rooms_per_area: 2
          points_per_m2: 300         # surface sampling density

    Raises:
        ValueError: naming the offending key, e.g. ``settings.part.n_points``.
    """
    _check_keys(settings, _TOP_KEYS, "settings")
    part = _check_keys(settings["part"], _PART_KEYS, "settings.part")
    rooms = _check_keys(settings["rooms"], _ROOM_KEYS, "settings.rooms")

    def named(where: str, check: Callable[..., Any], *args: Any) -> Any:
        try:
            return check(*args)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None

    seed = named("settings.seed", check_int, "seed", settings["seed"], 0)
    normal_part = {"train_per_category": part["train_per_category"], "test_per_category": part["test_per_category"],
                   "n_points": part["n_points"], "val_per_category": part.get("val_per_category", 0),
                   "categories": list(part.get("categories", PART_CATEGORIES))}
    for key in ("train_per_category", "test_per_category", "n_points", "val_per_category"):
        low = 0 if key.startswith("val") else 1
        normal_part[key] = named(f"settings.part.{key}", check_int, key, normal_part[key], low)
    categories = named("settings.part.categories", check_part_categories, normal_part["categories"])
    normal_part["categories"] = list(categories)
    areas = named("settings.rooms", check_room_arguments, rooms["areas"], rooms["rooms_per_area"],
                  rooms["points_per_m2"], seed)
    normal_rooms = {"areas": list(areas), "rooms_per_area": int(rooms["rooms_per_area"]),
                    "points_per_m2": float(rooms["points_per_m2"])}
    return {"seed": seed, "part": normal_part, "rooms": normal_rooms}


_OUTPUTS = {SHAPENETPART_LAYOUT, S3DIS_LAYOUT, SUMMARY_FILE}


def build_seg_standins(out_dir: Path, settings: Mapping[str, Any], log: TextIO = sys.stderr) -> dict[str, Any]:
    """Write both segmentation stand-ins into ``out_dir``, atomically, and return a summary.

    ``out_dir`` receives ``shapenetcore_partanno_segmentation_benchmark_v0_normal/``,
    ``Stanford3dDataset_v1.2_Aligned_Version/`` and ``seg_standins.json`` (the summary).
    Everything is built in a temporary folder next to ``out_dir`` and moved into place only
    once complete (``picat.atomic.atomic_path``), so ``out_dir`` never holds a partial build;
    a previous build there is replaced as a whole. ``out_dir`` must be a folder of its own: an
    existing one holding anything else is refused, never deleted.

    Args:
        out_dir: the folder to (re)create.
        settings: the block described in ``check_settings``.
        log: where progress lines go.

    Returns:
        {"settings": normalised settings, "shapenetpart": {split: shapes, "seconds": s},
         "s3dis": {"rooms": {"Area_<k>": [room names]}, "points": n, "class_points": {...}, "seconds": s}}
    """
    out_dir = Path(out_dir)
    settings = check_settings(settings)
    if out_dir.exists():
        foreign = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else [out_dir.name]
        foreign = [name for name in foreign if name not in _OUTPUTS]
        if foreign or not out_dir.is_dir():
            raise FileExistsError(f"{out_dir} exists and holds other things ({foreign}); "
                                  f"build_seg_standins needs a folder of its own")
    with atomic_path(out_dir) as tmp:  # an existing build is replaced as a whole, only once the new one is complete
        tmp.mkdir()
        seed, part, rooms = settings["seed"], settings["part"], settings["rooms"]
        started = time.time()
        per_split = {"train": part["train_per_category"], "val": part["val_per_category"],
                     "test": part["test_per_category"]}
        shapes = write_shapenetpart_into(tmp / SHAPENETPART_LAYOUT, per_split, part["n_points"], seed,
                                         tuple(part["categories"]), log)
        shapes["seconds"] = round(time.time() - started, 3)
        started = time.time()
        scenes = write_s3dis_into(tmp / S3DIS_LAYOUT, rooms["areas"], rooms["rooms_per_area"], rooms["points_per_m2"],
                                  seed, log)
        scenes["seconds"] = round(time.time() - started, 3)
        summary = {"settings": settings, "shapenetpart": shapes, "s3dis": scenes}
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
    print(f"[seg-standins] wrote {out_dir}: {sum(shapes[s] for s in PART_SPLITS)} part shapes, "
          f"{sum(len(v) for v in scenes['rooms'].values())} rooms ({scenes['points']} points)", file=log, flush=True)
    return summary
