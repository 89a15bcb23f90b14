"""The benchmark datasets read from their genuine public layouts: ModelNet40 and ScanObjectNN
(classification), ShapeNetPart (part segmentation) and S3DIS (scene segmentation).

Every classification reader returns a validated :class:`PointCloudSet` (points (n, N, C)
float32, labels (n,) int64, class names); every bad input is one :class:`DatasetError` naming
the file. :func:`read_classification` and :func:`read_part_segmentation` pick the reader from
a config mapping.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from picat.datasets.base import DatasetError, PointCloudSet
from picat.datasets.modelnet40 import (
    read_modelnet40_h5,
    read_modelnet40_off,
    read_modelnet40_resampled,
    write_modelnet40_h5,
)
from picat.datasets.s3dis import S3DIS_CLASSES, Room, convert_room, converted_rooms, raw_rooms, read_room, write_room
from picat.datasets.scanobjectnn import (
    SCANOBJECTNN_CLASSES,
    VARIANT_FILES,
    read_scanobjectnn,
    write_scanobjectnn,
)
from picat.datasets.shapenetpart import (
    CATEGORY_PARTS,
    PART_FORMATS,
    PartSegmentationSet,
    read_part_segmentation,
    read_shapenetpart_h5,
    read_shapenetpart_txt,
)

__all__ = [
    "DatasetError", "PointCloudSet", "FORMATS", "read_classification",
    "read_modelnet40_h5", "read_modelnet40_resampled", "read_modelnet40_off", "write_modelnet40_h5",
    "SCANOBJECTNN_CLASSES", "VARIANT_FILES", "read_scanobjectnn", "write_scanobjectnn",
    "CATEGORY_PARTS", "PART_FORMATS", "PartSegmentationSet", "read_part_segmentation", "read_shapenetpart_h5",
    "read_shapenetpart_txt",
    "S3DIS_CLASSES", "Room", "convert_room", "converted_rooms", "raw_rooms", "read_room", "write_room",
]

FORMATS = ("modelnet40_h5", "modelnet40_resampled", "modelnet40_off", "scanobjectnn")


def read_classification(spec: Mapping[str, Any], split: str) -> PointCloudSet:
    """Read ``split`` of the dataset a config entry describes.

    Args:
        spec: ``{"format": one of FORMATS, "root": folder, ...}`` with the format's options:
            "variant" (scanobjectnn, required), "n_points" (modelnet40_resampled and
            modelnet40_off, required), "seed" (modelnet40_off, required), "normals"
            (modelnet40_h5, _resampled, _off; default false). Other keys are ignored.
        split: "train" or "test".

    Raises:
        DatasetError: unknown format, a missing or mistyped key (named), or any reader error.
    """
    if not isinstance(spec, Mapping):
        raise DatasetError(f"classification dataset spec must be a mapping, got {type(spec).__name__}")
    fmt = _option(spec, "format", str)
    if fmt not in FORMATS:
        raise DatasetError(f"classification dataset spec: key 'format' is {fmt!r}, expected one of {list(FORMATS)}")
    root = Path(_option(spec, "root", (str, os.PathLike)))
    normals = _option(spec, "normals", bool, default=False)
    if fmt == "modelnet40_h5":
        return read_modelnet40_h5(root, split, normals=normals)
    if fmt == "modelnet40_resampled":
        return read_modelnet40_resampled(root, split, _option(spec, "n_points", int), normals=normals)
    if fmt == "modelnet40_off":
        return read_modelnet40_off(root, split, _option(spec, "n_points", int), _option(spec, "seed", int),
                                   normals=normals)
    return read_scanobjectnn(root, _option(spec, "variant", str), split)


_MISSING = object()


def _option(spec: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any = _MISSING) -> Any:
    """``spec[key]`` checked to be a ``kind`` (bool is not an int here); DatasetError naming the key."""
    where = f"classification dataset spec ({spec.get('format', '?')} at {spec.get('root', '?')})"
    if key not in spec:
        if default is _MISSING:
            raise DatasetError(f"{where}: missing key {key!r}")
        return default
    value = spec[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise DatasetError(f"{where}: key {key!r} must be {expected}, got {value!r}")
    return value
