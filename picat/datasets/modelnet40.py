"""ModelNet40 in its three public layouts: the PointNet HDF5, the PointNet++ resampled text
files and the original Princeton OFF meshes (plus a writer for the HDF5 layout).

HDF5 (``modelnet40_ply_hdf5_2048``, PointNet authors)::

    ply_data_{train,test}{0..4}.h5   data (n, 2048, 3) float32, label (n, 1) uint8,
                                     optional normal (n, 2048, 3) float32
    shape_names.txt                  40 class names, one per line, in label order
    {train,test}_files.txt           lines ``data/modelnet40_ply_hdf5_2048/ply_data_train0.h5``

Resampled (``modelnet40_normal_resampled``, PointNet++ authors)::

    <class>/<class>_NNNN.txt         10000 lines ``x,y,z,nx,ny,nz``
    modelnet40_shape_names.txt       class names in label order
    modelnet40_{train,test}.txt      ids such as ``airplane_0001``

Meshes (``ModelNet40``, Princeton)::

    <class>/{train,test}/<class>_NNNN.off
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence
from itertools import islice
from pathlib import Path, PurePosixPath, PureWindowsPath

import h5py
import numpy as np

from picat.atomic import atomic_path, write_lines_atomically
from picat.datasets.base import (
    DatasetError,
    PointCloudSet,
    check_finite,
    check_h5_labels,
    check_points_array,
    open_h5,
    read_h5_array,
    read_name_list,
    read_numbered_lines,
    require_root,
    require_split,
)
from picat.meshes import MeshError, load_mesh, sample_surface

H5_LAYOUT = ("the `modelnet40_ply_hdf5_2048` folder (ply_data_{train,test}N.h5, shape_names.txt, "
             "{train,test}_files.txt)")
H5_ORIGIN = "it is the ModelNet40 HDF5 release of the PointNet authors, modelnet40_ply_hdf5_2048.zip"
RESAMPLED_LAYOUT = ("the `modelnet40_normal_resampled` folder (<class>/<class>_NNNN.txt, "
                    "modelnet40_shape_names.txt, modelnet40_{train,test}.txt)")
RESAMPLED_ORIGIN = "it is the PointNet++ authors' release, modelnet40_normal_resampled.zip"
OFF_LAYOUT = "the `ModelNet40` mesh folder (<class>/{train,test}/<class>_NNNN.off)"
OFF_ORIGIN = "it is ModelNet40.zip from the Princeton ModelNet project (modelnet.cs.princeton.edu)"
H5_LIST_PREFIX = "data/modelnet40_ply_hdf5_2048"
RESAMPLED_COLUMNS = 6  # x, y, z, nx, ny, nz


# --------------------------------------------------------------------------- HDF5 layout


def read_modelnet40_h5(root: Path, split: str, normals: bool = False) -> PointCloudSet:
    """Read one split of the PointNet ModelNet40 HDF5 release.

    The files are those named by ``{split}_files.txt`` (each line's basename, resolved inside
    ``root``) in its order; without that list, ``ply_data_{split}K.h5`` in order of K.

    Args:
        root: the ``modelnet40_ply_hdf5_2048`` folder.
        split: "train" or "test".
        normals: also read the ``normal`` key (not in every copy of the release).

    Returns:
        points (n, N, 3) or, with normals, (n, N, 6) float32; labels (n,) int64; the 40 names.

    Raises:
        DatasetError: missing folder/file/key, unreadable file, bad shape, label out of range,
            data/label length mismatch, files with different N.
    """
    root = require_root(root, H5_LAYOUT, H5_ORIGIN)
    require_split(split, root)
    class_names = tuple(read_name_list(root / "shape_names.txt", "class names (shape_names.txt)"))
    files = _h5_split_files(root, split)
    chunks, labels = [], []
    for path in files:
        points, label = _read_h5_file(path, len(class_names), normals)
        if chunks and points.shape[1:] != chunks[0].shape[1:]:
            raise DatasetError(f"{path}: samples have shape {points.shape[1:]}, but the split's first "
                               f"file has {chunks[0].shape[1:]}")
        chunks.append(points)
        labels.append(label)
    return PointCloudSet(np.concatenate(chunks), np.concatenate(labels), class_names,
                         source=f"ModelNet40 HDF5 {split} split: {', '.join(str(p) for p in files)}")


def _h5_split_files(root: Path, split: str) -> list[Path]:
    """The split's HDF5 files in order, from ``{split}_files.txt`` or by globbing."""
    listing = root / f"{split}_files.txt"
    if listing.is_file():
        files = []
        for number, line in read_numbered_lines(listing, "file list"):
            # The release lists paths relative to the PointNet repo (data/modelnet40_ply_hdf5_2048/...).
            name = PureWindowsPath(line).name if "\\" in line else PurePosixPath(line).name
            path = root / name
            if not path.is_file():
                raise DatasetError(f"{path}: HDF5 file listed in {listing} line {number} ({line!r}) does not exist")
            files.append(path)
        return files
    files = _numbered_h5_files(root, split)
    if not files:
        raise DatasetError(f"{root}: no {listing.name} and no ply_data_{split}N.h5 files "
                           f"(expected {H5_LAYOUT})")
    return files


def _numbered_h5_files(root: Path, split: str) -> list[Path]:
    """``ply_data_{split}K.h5`` in ``root``, by K (numerically: 10 after 9)."""
    pattern = re.compile(rf"ply_data_{split}(\d+)\.h5$")
    numbered = [(int(m.group(1)), p) for p in root.iterdir() if (m := pattern.match(p.name))]
    return [path for _, path in sorted(numbered)]


def _read_h5_file(path: Path, n_classes: int, normals: bool) -> tuple[np.ndarray, np.ndarray]:
    """(n, N, 3|6) float32 points and (n,) int64 labels of one ``ply_data_*.h5`` file."""
    with open_h5(path) as handle:
        data = check_points_array(read_h5_array(handle, "data", path), path, "data")
        labels = check_h5_labels(read_h5_array(handle, "label", path), len(data), n_classes, path)
        if not normals:
            return data, labels
        normal = check_points_array(read_h5_array(handle, "normal", path), path, "normal")
    if normal.shape != data.shape:
        raise DatasetError(f"{path}: HDF5 key 'normal' has shape {normal.shape} but 'data' has {data.shape}")
    return np.concatenate([data, normal], axis=2), labels


def write_modelnet40_h5(root: Path, split: str, points: np.ndarray, labels: np.ndarray,
                        class_names: Sequence[str], per_file: int = 2048) -> list[Path]:
    """Write a split in the PointNet HDF5 layout that :func:`read_modelnet40_h5` (and the
    peers' loaders) read.

    Writes ``ply_data_{split}K.h5`` (``per_file`` samples each; ``data``, ``label`` (n, 1)
    uint8 as in the release, and ``normal`` when C = 6), then ``shape_names.txt`` and
    ``{split}_files.txt``; every file through a temporary name and a rename, the lists last
    so they never name a missing file. ``shape_names.txt`` is shared by both splits (the
    last write wins); ``ply_data_{split}K.h5`` left over from a longer earlier write are removed.

    Args:
        root: the folder to write (created if needed).
        split: "train" or "test".
        points: (n, N, 3) or (n, N, 6) float coordinates (+ normals).
        labels: (n,) integer labels in [0, len(class_names)).
        class_names: names in label order.
        per_file: samples per HDF5 file (the release uses 2048).

    Returns:
        The HDF5 files written, in order.

    Raises:
        DatasetError: invalid arrays or labels (as :class:`PointCloudSet` checks them), n = 0.
    """
    root = Path(root)
    require_split(split, root)
    if per_file <= 0:
        raise DatasetError(f"{root}: per_file must be positive, got {per_file}")
    dataset = _validated(points, labels, class_names, f"{root} ({split} split to write)")
    # uint8 as in the release when it fits; more than 256 classes need a wider type.
    label_dtype = np.uint8 if dataset.n_classes <= 256 else np.int64
    written = []
    for index, start in enumerate(range(0, len(dataset), per_file)):
        chunk = slice(start, start + per_file)
        path = root / f"ply_data_{split}{index}.h5"
        with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
            handle.create_dataset("data", data=dataset.points[chunk, :, :3])
            handle.create_dataset("label", data=dataset.labels[chunk, None].astype(label_dtype))
            if dataset.points.shape[2] == 6:
                handle.create_dataset("normal", data=dataset.points[chunk, :, 3:])
        written.append(path)
    write_lines_atomically(root / "shape_names.txt", dataset.class_names)
    write_lines_atomically(root / f"{split}_files.txt", [f"{H5_LIST_PREFIX}/{p.name}" for p in written])
    # Files of an earlier, longer write would be read by the glob fallback of a copy that
    # loses the list; remove them only now that the new list is in place.
    for stale in _numbered_h5_files(root, split)[len(written):]:
        stale.unlink()
    return written


def _validated(points: np.ndarray, labels: np.ndarray, class_names: Sequence[str], where: str) -> PointCloudSet:
    """Writer input checked and converted as a reader's output would be."""
    points = np.asarray(points)
    if not np.issubdtype(points.dtype, np.number):
        raise DatasetError(f"{where}: points must be numeric, got dtype {points.dtype}")
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"{where}: labels must be integers, got dtype {labels.dtype}")
    dataset = PointCloudSet(np.ascontiguousarray(points, dtype=np.float32), labels.astype(np.int64),
                            tuple(class_names), source=where)
    if len(dataset) == 0:
        raise DatasetError(f"{where}: no samples to write")
    return dataset


# --------------------------------------------------------------------------- resampled text layout


def read_modelnet40_resampled(root: Path, split: str, n_points: int, normals: bool = False) -> PointCloudSet:
    """Read one split of ``modelnet40_normal_resampled``: the first ``n_points`` lines of each
    listed shape's text file, as the PointNet++ loader does without farthest point sampling.

    Values are returned as stored (no centring or scaling: that is the transforms' job).

    Args:
        root: the ``modelnet40_normal_resampled`` folder.
        split: "train" or "test" (reads ``modelnet40_{split}.txt``).
        n_points: points per shape N (at most the 10000 lines of a file).
        normals: keep the normals (C = 6) rather than xyz only (C = 3).

    Returns:
        points (n, N, 3|6) float32 in the split list's order; labels (n,) int64.

    Raises:
        DatasetError: missing folder/list/file, an id of an unknown class, a line that does
            not parse (file and line number), a file with fewer than n_points lines.
    """
    root = require_root(root, RESAMPLED_LAYOUT, RESAMPLED_ORIGIN)
    require_split(split, root)
    _require_positive(n_points, "n_points", root)
    names_file = root / "modelnet40_shape_names.txt"
    class_names = tuple(read_name_list(names_file, "class names"))
    label_of = {name: label for label, name in enumerate(class_names)}
    listing = root / f"modelnet40_{split}.txt"
    clouds, labels = [], []
    for number, shape_id in read_numbered_lines(listing, "split list"):
        # Ids are <class>_NNNN and class names may hold underscores (night_stand_0001).
        class_name = shape_id.rsplit("_", 1)[0]
        if "_" not in shape_id or class_name not in label_of:
            raise DatasetError(f"{listing}: line {number}: id {shape_id!r} does not start with a class "
                               f"of {names_file} followed by _NNNN")
        path = root / class_name / f"{shape_id}.txt"
        if not path.is_file():
            raise DatasetError(f"{path}: file of id {shape_id!r} (listed in {listing} line {number}) does not exist")
        cloud = read_resampled_txt(path, n_points)
        clouds.append(cloud if normals else cloud[:, :3])
        labels.append(label_of[class_name])
    return PointCloudSet(np.ascontiguousarray(np.stack(clouds)), np.asarray(labels, dtype=np.int64),
                         class_names, source=f"ModelNet40 resampled {split} split: {listing}")


def read_resampled_txt(path: Path, n_points: int) -> np.ndarray:
    """The first ``n_points`` lines ``x,y,z,nx,ny,nz`` of one resampled file as (n_points, 6) float32."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = list(islice(handle, n_points))
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(f"{path}: cannot be read as text ({error})") from error
    if len(lines) < n_points:
        raise DatasetError(f"{path}: has only {len(lines)} lines, fewer than the n_points={n_points} requested")
    try:
        # float64 then float32, exactly as the peers' np.loadtxt(...).astype(np.float32).
        values = np.loadtxt(lines, delimiter=",", dtype=np.float64, ndmin=2)
    except ValueError:
        values = None
    if values is None or values.shape != (n_points, RESAMPLED_COLUMNS):
        _raise_bad_line(path, lines)  # loadtxt skips blank lines, so a shape mismatch is a bad line too
    values = values.astype(np.float32)
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        number = int(np.flatnonzero(~finite)[0]) + 1
        raise DatasetError(f"{path}: line {number}: non-finite value in {lines[number - 1].strip()!r}")
    return values


def _raise_bad_line(path: Path, lines: list[str]) -> None:
    """Find the first line that is not six comma-separated numbers and raise naming it."""
    for number, line in enumerate(lines, start=1):
        fields = line.strip().split(",")
        if len(fields) != RESAMPLED_COLUMNS:
            raise DatasetError(f"{path}: line {number}: expected {RESAMPLED_COLUMNS} comma-separated values "
                               f"x,y,z,nx,ny,nz, got {len(fields)}: {line.strip()!r}")
        try:
            [float(field) for field in fields]
        except ValueError:
            raise DatasetError(f"{path}: line {number}: not a number in {line.strip()!r}") from None
    raise DatasetError(f"{path}: cannot be parsed as lines x,y,z,nx,ny,nz")


def _require_positive(value: int, name: str, where: Path) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise DatasetError(f"{where}: {name} must be a positive integer, got {value!r}")


# --------------------------------------------------------------------------- OFF mesh layout


def read_modelnet40_off(root: Path, split: str, n_points: int, seed: int, normals: bool = False) -> PointCloudSet:
    """Sample ``n_points`` surface points from every mesh of one split of the Princeton release.

    Meshes are loaded and normalised into the unit sphere by :func:`picat.meshes.load_mesh`
    (which also reads ModelNet's broken ``OFF3514 3546 0`` headers) and sampled area-weighted
    by :func:`picat.meshes.sample_surface`. Each mesh's sampler seed is derived from ``seed``
    and the file name, so a shape's points do not change when other files come or go.

    Args:
        root: the ``ModelNet40`` folder; class names are its sorted sub-folder names.
        split: "train" or "test".
        n_points: samples per mesh N.
        seed: base seed of the sampling.
        normals: append the sampled face normals (C = 6).

    Returns:
        points (n, N, 3|6) float32, by class then file name; labels (n,) int64.

    Raises:
        DatasetError: missing folder, a class without a ``split`` folder, no meshes at all,
            or a mesh that cannot be loaded (named; it is not dropped).
    """
    root = require_root(root, OFF_LAYOUT, OFF_ORIGIN)
    require_split(split, root)
    _require_positive(n_points, "n_points", root)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"{root}: seed must be a non-negative integer, got {seed!r}")
    # Skip hidden folders and archive debris (.ipynb_checkpoints, __MACOSX) a copy may carry.
    class_names = tuple(sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith((".", "__"))))
    if not class_names:
        raise DatasetError(f"{root}: no class sub-folders (expected {OFF_LAYOUT})")
    clouds, labels = [], []
    for label, class_name in enumerate(class_names):
        folder = root / class_name / split
        if not folder.is_dir():
            raise DatasetError(f"{folder}: folder does not exist (expected {OFF_LAYOUT})")
        for path in sorted(folder.glob("*.off")):
            points, point_normals = _sample_off(path, n_points, seed)
            clouds.append(np.concatenate([points, point_normals], axis=1) if normals else points)
            labels.append(label)
    if not clouds:
        raise DatasetError(f"{root}: no .off meshes in any <class>/{split} folder")
    return PointCloudSet(np.stack(clouds), np.asarray(labels, dtype=np.int64), class_names,
                         source=f"ModelNet40 OFF meshes, {split} split: {root}")


def _sample_off(path: Path, n_points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) points and (N, 3) normals of one mesh; a bad mesh is a DatasetError naming it."""
    try:
        mesh = load_mesh(path)
        points, point_normals = sample_surface(mesh, n_points, seed=mesh_seed(seed, path.stem))
    except MeshError as error:
        raise DatasetError(f"{path}: mesh cannot be used: {error.reason}") from error
    except ValueError as error:  # normalisation of a mesh whose vertices all coincide
        raise DatasetError(f"{path}: mesh cannot be used: {error}") from error
    check_finite(points[None], str(path), "sampled points")
    return points, point_normals


def mesh_seed(seed: int, shape_id: str) -> int:
    """The sampler seed of one shape: a hash of (seed, id), stable across runs and machines."""
    return int(np.random.SeedSequence([int(seed), zlib.crc32(shape_id.encode("utf-8"))]).generate_state(1)[0])
