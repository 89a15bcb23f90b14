"""ScanObjectNN (real scans, 15 classes) in its released ``h5_files`` layout, and a writer for it.

Layout (root = ``h5_files``)::

    main_split/{training,test}_objectdataset.h5                          OBJ_BG
    main_split_nobg/{training,test}_objectdataset.h5                     OBJ_ONLY
    main_split/{training,test}_objectdataset_augmentedrot_scale75.h5     PB_T50_RS

Each file: ``data`` (n, 2048, 3) float32, ``label`` (n,) int, optional ``mask`` (n, 2048)
int with -1 on background points (the authors' code takes ``mask != -1`` as foreground).
The released files hold no class names: they are :data:`SCANOBJECTNN_CLASSES`, unless a
``shape_names.txt`` in the root (one per line, written by :func:`write_scanobjectnn` for
the demo suite's own categories) says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from picat.atomic import atomic_path, write_lines_atomically
from picat.datasets.base import (
    DatasetError,
    PointCloudSet,
    check_h5_labels,
    check_points_array,
    open_h5,
    read_h5_array,
    read_name_list,
    require_root,
    require_split,
)

SCANOBJECTNN_CLASSES: tuple[str, ...] = (
    "bag", "bin", "box", "cabinet", "chair", "desk", "display", "door",
    "shelf", "table", "bed", "pillow", "sink", "sofa", "toilet",
)
VARIANT_FILES: dict[str, str] = {
    "obj_bg": "main_split/{split}_objectdataset.h5",
    "obj_only": "main_split_nobg/{split}_objectdataset.h5",
    "pb_t50_rs": "main_split/{split}_objectdataset_augmentedrot_scale75.h5",
}
# The release names the training files "training_*", the test files "test_*".
SPLIT_PREFIXES = {"train": "training", "test": "test"}
CLASS_NAMES_FILE = "shape_names.txt"
LAYOUT = ("ScanObjectNN's `h5_files` folder (main_split/ and main_split_nobg/ with "
          "{training,test}_objectdataset*.h5)")
ORIGIN = ("download h5_files.zip from the ScanObjectNN authors (hkust-vgd.github.io/scanobjectnn) "
          "after agreeing to their terms of use")


def scanobjectnn_path(root: Path, variant: str, split: str) -> Path:
    """The HDF5 file of ``variant`` ("obj_bg", "obj_only", "pb_t50_rs") and ``split`` under ``root``."""
    if variant not in VARIANT_FILES:
        raise DatasetError(f"{root}: unknown ScanObjectNN variant {variant!r} "
                           f"(expected one of {sorted(VARIANT_FILES)})")
    require_split(split, root)
    return Path(root) / VARIANT_FILES[variant].format(split=SPLIT_PREFIXES[split])


def read_scanobjectnn(root: Path, variant: str, split: str) -> PointCloudSet:
    """Read one variant and split of ScanObjectNN.

    Args:
        root: the ``h5_files`` folder.
        variant: "obj_bg", "obj_only" or "pb_t50_rs".
        split: "train" (``training_*`` files) or "test".

    Returns:
        points (n, N, 3) float32, labels (n,) int64, the class names, and the file's ``mask``
        (n, N) as stored (int, -1 = background) when it has one.

    Raises:
        DatasetError: missing folder/file/key, unreadable file, bad shape, label out of range,
            data/label/mask length mismatch.
    """
    root = require_root(root, LAYOUT, ORIGIN)
    path = scanobjectnn_path(root, variant, split)
    class_names = _class_names(root)
    with open_h5(path) as handle:
        data = check_points_array(read_h5_array(handle, "data", path), path, "data")
        labels = check_h5_labels(read_h5_array(handle, "label", path), len(data), len(class_names), path)
        masks = _check_masks(read_h5_array(handle, "mask", path), data.shape[:2], path) if "mask" in handle else None
    return PointCloudSet(data, labels, class_names, source=f"ScanObjectNN {variant} {split}: {path}", masks=masks)


def _class_names(root: Path) -> tuple[str, ...]:
    names_file = root / CLASS_NAMES_FILE
    if names_file.is_file():
        return tuple(read_name_list(names_file, "class names"))
    return SCANOBJECTNN_CLASSES


def _check_masks(mask: np.ndarray, shape: tuple[int, ...], path: Path) -> np.ndarray:
    """The ``mask`` key as an int/bool (n, N) array matching ``data``."""
    if mask.shape != shape:
        raise DatasetError(f"{path}: HDF5 key 'mask' has shape {mask.shape}, expected {shape} to match 'data'")
    if mask.dtype == np.bool_ or np.issubdtype(mask.dtype, np.integer):
        return mask
    # A float copy of the labels (-1.0, 1.0, ...) is accepted if every value is a whole number.
    if np.issubdtype(mask.dtype, np.floating) and np.isfinite(mask).all() and (mask == np.round(mask)).all():
        return mask.astype(np.int64)
    raise DatasetError(f"{path}: HDF5 key 'mask' has dtype {mask.dtype} with non-integer values, expected int or bool")


def write_scanobjectnn(root: Path, variant: str, split: str, points: np.ndarray, labels: np.ndarray,
                       masks: np.ndarray | None = None, class_names: Sequence[str] | None = None) -> Path:
    """Write one variant and split in the released layout (readable by :func:`read_scanobjectnn`
    and the peers' loaders), through a temporary file and a rename.

    Args:
        root: the ``h5_files`` folder to write into (created if needed).
        variant, split: as for :func:`read_scanobjectnn`.
        points: (n, N, 3) float coordinates -> ``data`` float32.
        labels: (n,) integer labels -> ``label`` int64.
        masks: optional (n, N) int or bool -> ``mask``, dtype kept.
        class_names: written to ``root/shape_names.txt`` when given; otherwise labels are
            checked against the names a reader will use (an existing shape_names.txt, else
            the 15 official classes).

    Returns:
        The HDF5 file written.

    Raises:
        DatasetError: invalid arrays, labels out of range, n = 0.
    """
    root = Path(root)
    path = scanobjectnn_path(root, variant, split)
    names = tuple(class_names) if class_names is not None else (
        _class_names(root) if root.is_dir() else SCANOBJECTNN_CLASSES)
    dataset = _validated(points, labels, masks, names, f"{path} (to write)")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.create_dataset("data", data=dataset.points)
        handle.create_dataset("label", data=dataset.labels)
        if dataset.masks is not None:
            handle.create_dataset("mask", data=dataset.masks)
    if class_names is not None:
        write_lines_atomically(root / CLASS_NAMES_FILE, dataset.class_names)
    return path


def _validated(points: np.ndarray, labels: np.ndarray, masks: np.ndarray | None,
               class_names: tuple[str, ...], where: str) -> PointCloudSet:
    """Writer input checked and converted as the reader's output would be."""
    points, labels = np.asarray(points), np.asarray(labels)
    if not np.issubdtype(points.dtype, np.number):
        raise DatasetError(f"{where}: points must be numeric, got dtype {points.dtype}")
    if points.ndim != 3 or points.shape[2] != 3:
        raise DatasetError(f"{where}: points must have shape (n, N, 3), got {points.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    dataset = PointCloudSet(np.ascontiguousarray(points, dtype=np.float32), labels.astype(np.int64),
                            class_names, source=where, masks=None if masks is None else np.asarray(masks))
    if len(dataset) == 0:
        raise DatasetError(f"{where}: no samples to write")
    return dataset
