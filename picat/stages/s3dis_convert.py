"""The s3dis-convert step: raw S3DIS rooms -> ``Area_<k>_<room>.npy`` arrays, once per dataset."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, TextIO

from picat.atomic import atomic_path
from picat.datasets import convert_room, raw_rooms, write_room


def convert_s3dis(raw_root: Path, out_dir: Path, log: TextIO = sys.stderr) -> dict[str, Any]:
    """Convert every raw room under ``raw_root`` into ``out_dir/Area_<k>_<room>.npy``.

    The folder is built under a temporary name and renamed at the end, so an interrupted
    conversion never leaves a half-converted dataset behind.
    """
    rooms = raw_rooms(Path(raw_root))
    started, points, remapped = time.perf_counter(), 0, 0
    with atomic_path(Path(out_dir)) as tmp:
        tmp.mkdir(parents=True)
        for index, room_dir in enumerate(rooms, start=1):
            array, n_remapped = convert_room(room_dir)
            write_room(array, tmp / f"{room_dir.parent.name}_{room_dir.name}.npy")
            points, remapped = points + len(array), remapped + n_remapped
            print(f"[s3dis] {index}/{len(rooms)} {room_dir.parent.name}/{room_dir.name}: {len(array)} points"
                  + (f", {n_remapped} annotation file(s) of other classes counted as clutter" if n_remapped else ""),
                  file=log, flush=True)
    summary = {"rooms": len(rooms), "points": points, "remapped_files": remapped,
               "seconds": round(time.perf_counter() - started, 1)}
    print(f"[s3dis] converted {summary}", file=log, flush=True)
    return summary
