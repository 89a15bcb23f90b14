"""S3DIS (Armeni et al. 2016) for scene segmentation (Table 5): the raw annotated text layout,
converted once per room into an (N, 7) array, and the already-converted ``.npy`` layout.

Raw layout (``Stanford3dDataset_v1.2_Aligned_Version``)::

    Area_<k>/<room>/Annotations/<class>_<i>.txt      "x y z r g b" per point

Converted layout (what PointNeXt calls ``s3disfull/raw``)::

    Area_<k>_<room>.npy                              (N, 7) float32: x y z r g b label

Classes follow the annotation file names; as in the reference conversion (PointNet's
``collect_indoor3d_data``), a class outside the 13 (the few ``stairs`` files) is counted as
clutter. The conversion reports how many files it remapped so the choice is visible.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from picat.atomic import atomic_path
from picat.datasets.base import DatasetError, require_root

S3DIS_CLASSES: tuple[str, ...] = ("ceiling", "floor", "wall", "beam", "column", "window", "door", "table", "chair",
                                  "sofa", "bookcase", "board", "clutter")
_ORIGIN = "S3DIS Stanford3dDataset_v1.2_Aligned_Version, from its authors after agreeing to their terms"
_ROOM_FILE = re.compile(r"^Area_(\d+)_(.+)\.npy$")


@dataclass(frozen=True)
class Room:
    """One room: points (N, 3) float32 metres, colors (N, 3) float32 in [0, 255], labels (N,) int64."""

    name: str
    area: int
    points: np.ndarray
    colors: np.ndarray
    labels: np.ndarray


def _read_xyzrgb(path: Path) -> np.ndarray:
    """(M, 6) float64 of an annotation file; a bad line is a DatasetError naming file and line."""
    try:
        table = pd.read_csv(path, sep=r"\s+", header=None, dtype=np.float64, engine="c").to_numpy()
    except (ValueError, pd.errors.ParserError) as error:
        # Find the first offending line so the user can fix it (S3DIS has a known bad byte
        # in Area_5/hallway_6/Annotations/ceiling_1.txt).
        with open(path, encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, start=1):
                fields = line.split()
                try:
                    if len(fields) != 6:
                        raise ValueError(f"{len(fields)} fields")
                    [float(field) for field in fields]
                except ValueError:
                    raise DatasetError(f"{path}: line {number}: expected 'x y z r g b', "
                                       f"got {line.strip()!r}") from error
        raise DatasetError(f"{path}: cannot be parsed as 'x y z r g b' lines ({error})") from error
    if table.ndim != 2 or table.shape[1] != 6:
        raise DatasetError(f"{path}: expected 6 columns 'x y z r g b', got shape {table.shape}")
    return table


def convert_room(room_dir: Path) -> tuple[np.ndarray, int]:
    """(N, 7) float32 array (x y z r g b label) of a raw room, and the number of annotation
    files whose class was not one of the 13 (counted as clutter)."""
    annotations = Path(room_dir) / "Annotations"
    files = sorted(annotations.glob("*.txt")) if annotations.is_dir() else []
    if not files:
        raise DatasetError(f"{annotations}: no annotation files (expected <class>_<i>.txt)")
    parts, remapped = [], 0
    for path in files:
        name = path.stem.rsplit("_", 1)[0]
        if name not in S3DIS_CLASSES:
            name, remapped = "clutter", remapped + 1
        table = _read_xyzrgb(path)
        parts.append(np.c_[table, np.full(len(table), S3DIS_CLASSES.index(name))])
    return np.concatenate(parts).astype(np.float32), remapped


def raw_rooms(root: Path) -> list[Path]:
    """Every ``Area_<k>/<room>`` folder of the raw layout, sorted."""
    root = require_root(Path(root), "Stanford3dDataset_v1.2_Aligned_Version/Area_<k>/<room>/Annotations", _ORIGIN)
    rooms = sorted(path.parent for path in root.glob("Area_*/*/Annotations") if path.is_dir())
    if not rooms:
        raise DatasetError(f"{root}: no Area_<k>/<room>/Annotations folders")
    return rooms


def write_room(array: np.ndarray, path: Path) -> None:
    """Write an (N, 7) room array atomically (temp name, then rename)."""
    with atomic_path(Path(path)) as tmp:
        np.save(tmp, np.asarray(array, dtype=np.float32))


def read_room(path: Path) -> Room:
    """A converted room ``Area_<k>_<room>.npy``, checked."""
    path = Path(path)
    match = _ROOM_FILE.match(path.name)
    if match is None:
        raise DatasetError(f"{path}: expected a file named Area_<k>_<room>.npy")
    try:
        array = np.load(path)
    except (OSError, ValueError) as error:
        raise DatasetError(f"{path}: not a readable .npy file, truncated or corrupt? ({error})") from error
    if array.ndim != 2 or array.shape[1] != 7 or len(array) == 0:
        raise DatasetError(f"{path}: expected an (N, 7) array x y z r g b label, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise DatasetError(f"{path}: contains non-finite values")
    labels = array[:, 6]
    bad = (labels != np.round(labels)) | (labels < 0) | (labels >= len(S3DIS_CLASSES))
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{path}: point {index} has label {labels[index]}, "
                           f"not a class index 0..{len(S3DIS_CLASSES) - 1}")
    return Room(path.stem, int(match.group(1)), array[:, :3].astype(np.float32), array[:, 3:6].astype(np.float32),
                labels.astype(np.int64))


def converted_rooms(root: Path, areas: list[int] | None = None) -> list[Path]:
    """The converted rooms under ``root`` (optionally of the given areas), sorted."""
    root = require_root(Path(root), "Area_<k>_<room>.npy files (converted S3DIS)", _ORIGIN)
    paths = sorted(p for p in root.glob("Area_*.npy") if _ROOM_FILE.match(p.name))
    if areas is not None:
        paths = [p for p in paths if int(_ROOM_FILE.match(p.name).group(1)) in areas]
    if not paths:
        raise DatasetError(f"{root}: no Area_<k>_<room>.npy rooms" + (f" of areas {areas}" if areas else ""))
    return paths
