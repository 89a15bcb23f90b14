"""ShapeNetPart (Yi et al. 2016) for part segmentation (Table 4): the normal-resampled text
layout and the HDF5 variant, read into one :class:`PartSegmentationSet`.

Text layout (``shapenetcore_partanno_segmentation_benchmark_v0_normal``)::

    synsetoffset2category.txt                          "Airplane\\t02691156" per line
    <synset>/<shape id>.txt                            "x y z nx ny nz part" per point (part is global, 0..49)
    train_test_split/shuffled_{train,val,test}_file_list.json   ["shape_data/<synset>/<shape id>", ...]

HDF5 layout (``shapenet_part_seg_hdf5_data``)::

    ply_data_{train,val,test}<K>.h5   data (n, 2048, 3), label (n, 1) category index, pid (n, 2048) part
    all_object_categories.txt         "Airplane 02691156" per line, in label order
    {train,val,test}_hdf5_file_list.txt

Shapes keep every point of the file (text shapes have different point counts); protocols
sample from them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from picat.datasets.base import (
    DatasetError,
    check_h5_labels,
    check_points_array,
    open_h5,
    read_h5_array,
    read_numbered_lines,
    require_root,
)

# The 16 categories and their global part labels, in the benchmark's fixed order.
CATEGORY_PARTS: dict[str, tuple[int, ...]] = {
    "Airplane": (0, 1, 2, 3), "Bag": (4, 5), "Cap": (6, 7), "Car": (8, 9, 10, 11), "Chair": (12, 13, 14, 15),
    "Earphone": (16, 17, 18), "Guitar": (19, 20, 21), "Knife": (22, 23), "Lamp": (24, 25, 26, 27),
    "Laptop": (28, 29), "Motorbike": (30, 31, 32, 33, 34, 35), "Mug": (36, 37), "Pistol": (38, 39, 40),
    "Rocket": (41, 42, 43), "Skateboard": (44, 45, 46), "Table": (47, 48, 49),
}
SPLITS = ("train", "val", "test")
_ORIGIN = "ShapeNetPart from the ShapeNet part-annotation benchmark (Yi et al. 2016)"


@dataclass(frozen=True)
class PartSegmentationSet:
    """Shapes with per-point part labels.

    Attributes:
        points: per shape, (N_i, C) float32, C = 6 (xyz + normals) or 3.
        parts: per shape, (N_i,) int64 global part labels, each within its category's parts.
        categories: (n,) int64 index into ``category_names``.
        category_names: the categories in label order.
        shape_ids: per shape, "<synset>/<id>" (text) or "<file>:<row>" (HDF5).
    """

    points: list[np.ndarray]
    parts: list[np.ndarray]
    categories: np.ndarray
    category_names: tuple[str, ...]
    shape_ids: list[str]

    def category_parts(self) -> dict[str, tuple[int, ...]]:
        return {name: CATEGORY_PARTS[name] for name in self.category_names}

    def __len__(self) -> int:
        return len(self.points)


def _check_parts(parts: np.ndarray, category: str, where: str) -> np.ndarray:
    allowed = CATEGORY_PARTS[category]
    bad = ~np.isin(parts, allowed)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{where}: point {index} has part label {int(parts[index])}, not a part of "
                           f"{category} (its parts: {list(allowed)})")
    return parts


def _check_split(split: str, where: Path) -> None:
    if split not in SPLITS:
        raise DatasetError(f"{where}: split must be one of {SPLITS}, got {split!r}")


def _read_categories(path: Path, separator: str | None) -> list[tuple[str, str]]:
    """(name, synset) per line of synsetoffset2category.txt / all_object_categories.txt."""
    entries = []
    for number, line in read_numbered_lines(path, "category list"):
        fields = line.split(separator)
        if len(fields) != 2 or fields[0].strip() not in CATEGORY_PARTS:
            raise DatasetError(f"{path}: line {number}: expected '<category> <synset>' with one of "
                               f"{sorted(CATEGORY_PARTS)}, got {line!r}")
        entries.append((fields[0].strip(), fields[1].strip()))
    return entries


def read_shapenetpart_txt(root: Path, split: str, normals: bool = True) -> PartSegmentationSet:
    """The text layout's ``split`` (train, val or test) in the order of its file list."""
    root = require_root(Path(root), "shapenetcore_partanno_segmentation_benchmark_v0_normal", _ORIGIN)
    _check_split(split, root)
    categories = _read_categories(root / "synsetoffset2category.txt", None)
    by_synset = {synset: name for name, synset in categories}
    names = tuple(name for name, _ in categories)
    listing = root / "train_test_split" / f"shuffled_{split}_file_list.json"
    if not listing.is_file():
        raise DatasetError(f"{listing}: split list does not exist")
    try:
        entries = json.loads(listing.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(f"{listing}: not a readable JSON list ({error})") from error
    points, parts, labels, ids = [], [], [], []
    for entry in entries:
        synset, shape_id = Path(entry).parts[-2:]
        if synset not in by_synset:
            raise DatasetError(f"{listing}: entry {entry!r} names synset {synset}, not in synsetoffset2category.txt")
        path = root / synset / f"{shape_id}.txt"
        if not path.is_file():
            raise DatasetError(f"{listing}: entry {entry!r}: file {path} does not exist")
        try:
            table = np.loadtxt(path, dtype=np.float64, ndmin=2)
        except ValueError as error:
            raise DatasetError(f"{path}: not 7 numeric columns per line ({error})") from error
        if table.shape[1] != 7 or len(table) == 0 or not np.isfinite(table).all():
            raise DatasetError(f"{path}: expected finite 'x y z nx ny nz part' lines, got shape {table.shape}")
        category = by_synset[synset]
        points.append(table[:, :6 if normals else 3].astype(np.float32))
        parts.append(_check_parts(table[:, 6].astype(np.int64), category, str(path)))
        labels.append(names.index(category))
        ids.append(f"{synset}/{shape_id}")
    return PartSegmentationSet(points, parts, np.asarray(labels, dtype=np.int64), names, ids)


def read_shapenetpart_h5(root: Path, split: str) -> PartSegmentationSet:
    """The HDF5 layout's ``split`` (files from ``<split>_hdf5_file_list.txt``)."""
    root = require_root(Path(root), "shapenet_part_seg_hdf5_data", _ORIGIN)
    _check_split(split, root)
    names = tuple(name for name, _ in _read_categories(root / "all_object_categories.txt", None))
    points, parts, labels, ids = [], [], [], []
    for _, line in read_numbered_lines(root / f"{split}_hdf5_file_list.txt", "file list"):
        path = root / Path(line).name
        with open_h5(path) as handle:
            data = check_points_array(read_h5_array(handle, "data", path), path, "data")
            label = check_h5_labels(read_h5_array(handle, "label", path), len(data), len(names), path)
            pid = read_h5_array(handle, "pid", path)
        if pid.shape != data.shape[:2] or not np.issubdtype(pid.dtype, np.integer):
            raise DatasetError(f"{path}: HDF5 key 'pid' has shape {pid.shape} and dtype {pid.dtype}, expected "
                               f"integer {data.shape[:2]}")
        for row in range(len(data)):
            where = f"{path}: HDF5 key 'pid', row {row}"
            parts.append(_check_parts(pid[row].astype(np.int64), names[label[row]], where))
            points.append(data[row])
            labels.append(int(label[row]))
            ids.append(f"{path.name}:{row}")
    return PartSegmentationSet(points, parts, np.asarray(labels, dtype=np.int64), names, ids)


PART_FORMATS = ("shapenetpart_txt", "shapenetpart_h5")


def concatenate_part_sets(sets: list[PartSegmentationSet]) -> PartSegmentationSet:
    """One set holding the shapes of ``sets`` (same category order required)."""
    names = sets[0].category_names
    for other in sets[1:]:
        if other.category_names != names:
            raise DatasetError(f"splits list different categories: {names} vs {other.category_names}")
    return PartSegmentationSet(
        [p for s in sets for p in s.points], [p for s in sets for p in s.parts],
        np.concatenate([s.categories for s in sets]), names, [i for s in sets for i in s.shape_ids])


def read_part_segmentation(spec: Mapping[str, Any], split: str) -> PartSegmentationSet:
    """ShapeNetPart's ``split`` from a reader spec ``{format, root, normals?}``.

    ``split`` "trainval" is train + val: the benchmark's usual training set (the paper's
    peers train on both and test on test).
    """
    fmt = spec.get("format")
    if fmt not in PART_FORMATS:
        raise DatasetError(f"dataset spec 'format' must be one of {PART_FORMATS} for part segmentation, got {fmt!r}")
    root = Path(spec["root"])

    def read(one: str) -> PartSegmentationSet:
        if fmt == "shapenetpart_txt":
            return read_shapenetpart_txt(root, one, normals=bool(spec.get("normals", False)))
        return read_shapenetpart_h5(root, one)

    if split == "trainval":
        return concatenate_part_sets([s for s in (read("train"), read("val")) if len(s)])
    return read(split)
