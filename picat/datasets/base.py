"""What every classification reader returns, its one error type, and shared file helpers.

A reader turns a dataset in its genuine on-disk layout into a :class:`PointCloudSet`:

==============  ==================  =========================================================
field           shape, dtype        meaning
==============  ==================  =========================================================
points          (n, N, C) float32   C = 3 (xyz) or 6 (xyz + unit normals), file's frame
labels          (n,) int64          class index into ``class_names``
class_names     tuple of str        the dataset's class names in label order
source          str                 where the samples came from (paths), for messages/logs
masks           (n, N) int or bool  per-point foreground mask, where the format has one
==============  ==================  =========================================================

Every problem with the input is one :class:`DatasetError` whose message names the file (and
the HDF5 key or text line) and says what is wrong; nothing is dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np


class DatasetError(ValueError):
    """Bad dataset input. The message names the file (and HDF5 key / line where relevant) and
    what is wrong."""


@dataclass(frozen=True)
class PointCloudSet:
    """A labelled set of point clouds, validated on construction (shapes in the module docstring).

    Raises:
        DatasetError: wrong dtype or shape, non-finite points, label out of range, bad masks.
    """

    points: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    source: str
    masks: np.ndarray | None = None

    def __post_init__(self) -> None:
        where = self.source or "<PointCloudSet>"
        _check_class_names(self.class_names, where)
        _check_points_and_labels(self.points, self.labels, where)
        check_labels(self.labels, len(self.class_names), where)
        if self.masks is not None:
            _check_masks(self.masks, self.points.shape[:2], where)

    def __len__(self) -> int:
        return len(self.points)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def _check_class_names(class_names: object, where: str) -> None:
    if not isinstance(class_names, tuple) or not class_names:
        raise DatasetError(f"{where}: class_names must be a non-empty tuple of str, got {class_names!r}")
    if not all(isinstance(name, str) and name for name in class_names):
        raise DatasetError(f"{where}: class_names must be non-empty strings, got {class_names!r}")
    if len(set(class_names)) != len(class_names):
        raise DatasetError(f"{where}: class_names are not unique: {class_names!r}")


def _check_points_and_labels(points: object, labels: object, where: str) -> None:
    """points (n, N, 3|6) float32 and finite; labels (n,) int64."""
    if not isinstance(points, np.ndarray) or points.dtype != np.float32:
        raise DatasetError(f"{where}: points must be a float32 array, got {_describe(points)}")
    if points.ndim != 3 or points.shape[1] == 0 or points.shape[2] not in (3, 6):
        raise DatasetError(f"{where}: points must have shape (n, N, 3) or (n, N, 6), got {points.shape}")
    if not isinstance(labels, np.ndarray) or labels.dtype != np.int64:
        raise DatasetError(f"{where}: labels must be an int64 array, got {_describe(labels)}")
    if labels.shape != (len(points),):
        raise DatasetError(f"{where}: labels have shape {labels.shape}, expected ({len(points)},) "
                           f"to match points {points.shape}")
    check_finite(points, where, "points")


def _check_masks(masks: object, shape: tuple[int, ...], where: str) -> None:
    """masks (n, N) int or bool."""
    if not isinstance(masks, np.ndarray) or not (masks.dtype == np.bool_ or np.issubdtype(masks.dtype, np.integer)):
        raise DatasetError(f"{where}: masks must be an int or bool array, got {_describe(masks)}")
    if masks.shape != shape:
        raise DatasetError(f"{where}: masks have shape {masks.shape}, expected {shape} (n, N)")


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array of shape {value.shape}"
    return type(value).__name__


def check_labels(labels: np.ndarray, n_classes: int, where: str) -> None:
    """Raise a DatasetError naming ``where``, the first bad value and its index if any label
    of ``labels`` (n,) is outside [0, n_classes)."""
    bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
    if bad.size:
        index = int(bad[0])
        raise DatasetError(f"{where}: label {int(labels[index])} at index {index} is out of range for "
                           f"{n_classes} classes (valid: 0..{n_classes - 1}; {bad.size} bad labels in all)")


def check_finite(points: np.ndarray, where: str, what: str) -> None:
    """Raise a DatasetError naming the first sample of ``points`` (n, ...) with NaN or inf."""
    finite = np.isfinite(points).reshape(len(points), -1).all(axis=1)
    if not finite.all():
        index = int(np.flatnonzero(~finite)[0])
        raise DatasetError(f"{where}: {what} of sample {index} contain non-finite values (NaN or inf)")


def as_labels(labels: np.ndarray, where: str) -> np.ndarray:
    """Integer labels as (n,) int64; a float dtype is an error rather than a silent truncation."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    return labels.astype(np.int64).reshape(-1)


def require_root(root: Path, layout: str, origin: str) -> Path:
    """``root`` as a Path, or a DatasetError saying which layout was expected and where it comes from."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder does not exist (expected {layout}; {origin})")
    return root


def require_split(split: str, where: Path | str) -> str:
    if split not in ("train", "test"):
        raise DatasetError(f"{where}: split must be 'train' or 'test', got {split!r}")
    return split


def read_numbered_lines(path: Path, what: str) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-empty lines of a text list (class names, split
    ids, file lists); blank lines are skipped.

    Raises:
        DatasetError: the file is missing or unreadable, holds no entries, or repeats an
            entry, naming the file and line.
    """
    if not path.is_file():
        raise DatasetError(f"{path}: {what} file does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: {what} file cannot be read ({error})") from error
    entries: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name in seen:
            raise DatasetError(f"{path}: line {number}: {name!r} repeats line {seen[name]}")
        seen[name] = number
        entries.append((number, name))
    if not entries:
        raise DatasetError(f"{path}: {what} file is empty")
    return entries


def read_name_list(path: Path, what: str) -> list[str]:
    """The entries of a text list, as :func:`read_numbered_lines` without the line numbers."""
    return [name for _, name in read_numbered_lines(path, what)]


@contextmanager
def open_h5(path: Path) -> Iterator[h5py.File]:
    """Open an HDF5 file read-only; a missing, truncated or non-HDF5 file is a DatasetError."""
    if not path.is_file():
        raise DatasetError(f"{path}: HDF5 file does not exist")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:  # h5py reports truncated and non-HDF5 files as OSError
        raise DatasetError(f"{path}: not a readable HDF5 file, truncated or corrupt? ({error})") from error
    with handle:
        yield handle


def read_h5_array(handle: h5py.File, key: str, path: Path) -> np.ndarray:
    """The whole dataset ``key`` of an open file; a missing key names the keys that exist."""
    if key not in handle or not isinstance(handle[key], h5py.Dataset):
        what = "is missing" if key not in handle else "is a group, not a dataset"
        raise DatasetError(f"{path}: HDF5 key {key!r} {what} (keys present: {sorted(handle.keys())})")
    try:
        return np.asarray(handle[key][()])
    except OSError as error:  # a file cut short can open fine and fail on reading the data
        raise DatasetError(f"{path}: HDF5 key {key!r} cannot be read, truncated or corrupt? ({error})") from error


def check_points_array(data: np.ndarray, path: Path, key: str, channels: Sequence[int] = (3,)) -> np.ndarray:
    """(n, N, C) numeric array -> float32, with a DatasetError naming file and key otherwise."""
    if data.ndim != 3 or data.shape[1] == 0 or data.shape[2] not in channels:
        expected = " or ".join(f"(n, N, {c})" for c in channels)
        raise DatasetError(f"{path}: HDF5 key {key!r} has shape {data.shape}, expected {expected}")
    if not np.issubdtype(data.dtype, np.number):
        raise DatasetError(f"{path}: HDF5 key {key!r} has non-numeric dtype {data.dtype}")
    data = data.astype(np.float32, copy=False)
    check_finite(data, f"{path}: HDF5 key {key!r}", "points")
    return data


def check_h5_labels(label: np.ndarray, n: int, n_classes: int, path: Path, key: str = "label") -> np.ndarray:
    """(n,) or (n, 1) integer labels -> (n,) int64, checked against ``n`` samples and the classes."""
    if label.ndim == 2 and label.shape[1] == 1:
        label = label[:, 0]
    if label.ndim != 1:
        raise DatasetError(f"{path}: HDF5 key {key!r} has shape {label.shape}, expected (n,) or (n, 1)")
    if len(label) != n:
        raise DatasetError(f"{path}: HDF5 key {key!r} has {len(label)} entries but 'data' has {n} samples")
    labels = as_labels(label, f"{path}: HDF5 key {key!r}")
    check_labels(labels, n_classes, f"{path}: HDF5 key {key!r}")
    return labels
