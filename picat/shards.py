"""The HDF5 shard: schema, atomic streaming writer, validation and lazy reading.

A shard holds n objects, each with N surface points (+ normals) and V = 20 rendered views.
Datasets (schema version 1):

=====================  ======================  =============================================
name                   shape, dtype            meaning
=====================  ======================  =============================================
points                 (n, N, 3) float32       surface samples, world frame (unit sphere)
normals                (n, N, 3) float32       unit face normals of the samples
images                 (n, V, H, W, 3) uint8   renders over a white background
masks                  (n, V, H, W) bool       object pixels (render alpha > 0.5)
view_matrices          (n, V, 4, 4) float32    M_view, world -> camera (OpenGL, looks down -Z)
proj_matrices          (n, V, 4, 4) float32    M_proj, OpenGL perspective
world_from_file        (n, 4, 4) float64       mesh file coordinates -> world frame
object_ids             (n,) str                unique ids
categories             (n,) str                category (ShapeNet synset, class name, ...)
source_paths           (n,) str                mesh file each object came from
skipped/object_ids     (k,) str                meshes that were not rendered/sampled ...
skipped/paths          (k,) str                ... their files ...
skipped/reasons        (k,) str                ... and why
=====================  ======================  =============================================

Image convention (also in the ``convention`` attribute): clip = M_proj @ M_view @ [x,y,z,1],
ndc = clip[:3] / clip[3], u = (ndc_x + 1) / 2 left to right, v = (1 - ndc_y) / 2 top to
bottom, both in [0, 1] inside the image.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from picat.atomic import atomic_path, write_json_atomically
from picat.geometry import fraction_on_mask

SCHEMA_VERSION = 1
CONVENTION = (
    "clip = M_proj @ M_view @ [x, y, z, 1]; ndc = clip[:3] / clip[3]; "
    "u = (ndc_x + 1) / 2 (left to right); v = (1 - ndc_y) / 2 (top to bottom); u, v in [0, 1] inside the image"
)
STRING = h5py.string_dtype(encoding="utf-8")
REQUIRED_DATASETS = (
    "points", "normals", "images", "masks", "view_matrices", "proj_matrices", "world_from_file",
    "object_ids", "categories", "source_paths", "skipped/object_ids", "skipped/paths", "skipped/reasons",
)


class ShardError(ValueError):
    """A shard file that is missing, incomplete or inconsistent; the message names the file."""


@dataclass(frozen=True)
class SkippedMesh:
    """A mesh that was not rendered or sampled, with the reason (kept in the shard)."""

    object_id: str
    path: str
    reason: str


@dataclass(frozen=True)
class ShardObject:
    """One object's arrays, as stored in a shard (shapes as in the module docstring, without n)."""

    object_id: str
    category: str
    source_path: str
    points: np.ndarray
    normals: np.ndarray
    images: np.ndarray
    masks: np.ndarray
    view_matrices: np.ndarray
    proj_matrices: np.ndarray
    world_from_file: np.ndarray


@dataclass
class ShardWriter:
    """Streams objects into ``path`` through a temporary file, renamed only on success.

    Use as a context manager; objects are appended one at a time so a shard never has to fit
    in memory. Leaving the block with an exception removes the temporary file.
    """

    path: Path
    attributes: dict[str, Any] = field(default_factory=dict)
    _file: h5py.File | None = field(default=None, init=False)
    _count: int = field(default=0, init=False)
    _skipped: list[SkippedMesh] = field(default_factory=list, init=False)

    @property
    def count(self) -> int:
        """Objects added so far."""
        return self._count

    @property
    def skipped(self) -> list[SkippedMesh]:
        """Meshes recorded as skipped so far."""
        return list(self._skipped)

    def __enter__(self) -> ShardWriter:
        self._atomic = atomic_path(Path(self.path))
        self._file = create_untimed_file(self._atomic.__enter__())
        return self

    def _create(self, item: ShardObject) -> None:
        assert self._file is not None
        views, height, width = item.images.shape[:3]
        specs = {
            "points": (item.points.shape, np.float32, None),
            "normals": (item.normals.shape, np.float32, None),
            "images": (item.images.shape, np.uint8, (1, 1, height, width, 3)),
            "masks": (item.masks.shape, bool, (1, 1, height, width)),
            "view_matrices": (item.view_matrices.shape, np.float32, None),
            "proj_matrices": (item.proj_matrices.shape, np.float32, None),
            "world_from_file": ((4, 4), np.float64, None),
        }
        for name, (shape, dtype, chunks) in specs.items():
            compression = "gzip" if chunks else None
            self._file.create_dataset(
                name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                chunks=chunks or (1, *shape), compression=compression, track_times=False,
            )
        for name in ("object_ids", "categories", "source_paths"):
            self._file.create_dataset(name, shape=(0,), maxshape=(None,), dtype=STRING, chunks=(256,),
                                      track_times=False)

    def add(self, item: ShardObject) -> None:
        """Append one object."""
        if self._file is None:
            raise RuntimeError("ShardWriter.add called outside its `with` block")
        if self._count == 0:
            self._create(item)
        values = {
            "points": item.points, "normals": item.normals, "images": item.images, "masks": item.masks,
            "view_matrices": item.view_matrices, "proj_matrices": item.proj_matrices,
            "world_from_file": item.world_from_file, "object_ids": item.object_id,
            "categories": item.category, "source_paths": item.source_path,
        }
        for name, value in values.items():
            dataset = self._file[name]
            if dataset.shape[1:] != np.shape(value):
                raise ShardError(f"{self.path}: {item.object_id}: {name} has shape {np.shape(value)}, "
                                 f"the shard's is {dataset.shape[1:]}")
            dataset.resize(self._count + 1, axis=0)
            dataset[self._count] = value
        self._count += 1

    def skip(self, skipped: SkippedMesh) -> None:
        """Record a mesh that is not in the shard, and why."""
        self._skipped.append(skipped)

    def __exit__(self, exc_type, exc, traceback) -> None:
        assert self._file is not None
        try:
            if exc_type is None:
                if self._count == 0:
                    reasons = "; ".join(f"{s.object_id}: {s.reason}" for s in self._skipped[:5])
                    raise ShardError(f"{self.path}: every mesh of the shard failed "
                                     f"({len(self._skipped)} skipped: {reasons})")
                group = create_untimed_group(self._file, "skipped")
                columns = {"object_ids": "object_id", "paths": "path", "reasons": "reason"}
                for name, attribute in columns.items():
                    write_strings(group, name, [getattr(skipped, attribute) for skipped in self._skipped])
                attributes = {"schema_version": SCHEMA_VERSION, "convention": CONVENTION, **self.attributes}
                for key, value in attributes.items():
                    self._file.attrs[key] = value if isinstance(value, (int, float, str)) else json.dumps(value)
        except BaseException as error:
            self._file.close()
            self._atomic.__exit__(type(error), error, error.__traceback__)
            raise
        self._file.close()
        # Renames the temporary file onto the shard, or removes it when the block failed.
        self._atomic.__exit__(exc_type, exc, traceback)


def create_untimed_file(path: Path) -> h5py.File:
    """A new (truncated) HDF5 file whose root group records no timestamps; h5py < 3.15 stores
    them by default, which would make two packs of the same objects differ in their bytes."""
    fcpl = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    fcpl.set_obj_track_times(False)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)  # as h5py.File's own: closing the file closes all in it
    return h5py.File(h5py.h5f.create(os.fsencode(path), h5py.h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl))


def create_untimed_group(parent: h5py.Group, name: str) -> h5py.Group:
    """A new group that records no creation/modification times (so that the same content
    gives the same bytes: shards are byte-identical for a seed); older h5py's
    ``create_group`` has no ``track_times`` argument, hence the low-level call."""
    gcpl = h5py.h5p.create(h5py.h5p.GROUP_CREATE)
    gcpl.set_obj_track_times(False)
    h5py.h5g.create(parent.id, name.encode(), gcpl=gcpl)
    return parent[name]


def write_strings(group: h5py.Group, name: str, values: list[str]) -> None:
    """Create the (len(values),) UTF-8 string dataset ``name`` in ``group`` (empty lists too),
    without timestamps."""
    group.create_dataset(name, data=np.array(values, dtype=object), dtype=STRING, shape=(len(values),),
                         track_times=False)


def read_strings(dataset: h5py.Dataset) -> list[str]:
    """All entries of a string dataset as Python str."""
    return [value.decode() if isinstance(value, bytes) else str(value) for value in dataset[()]]


def open_shard(path: Path) -> h5py.File:
    """Open a shard read-only, with one clear error for a missing or unreadable file."""
    path = Path(path)
    if not path.is_file():
        raise ShardError(f"{path}: shard file does not exist")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise ShardError(f"{path}: not a readable HDF5 file ({error})") from error


def validate_shard(path: Path, check_projection: int = 0) -> dict[str, Any]:
    """Check a shard against the schema and return a summary.

    Args:
        path: the shard file.
        check_projection: if > 0, for that many objects also measure the fraction of points
            that project onto the object's mask in every view.

    Returns:
        A summary dict (counts, shapes, categories, skipped reasons, settings, projection check).

    Raises:
        ShardError: listing every problem found.
    """
    problems: list[str] = []
    with open_shard(path) as shard:
        missing = [name for name in REQUIRED_DATASETS if name not in shard]
        if missing:
            raise ShardError(f"{path}: missing datasets {missing}")
        version = shard.attrs.get("schema_version")
        if version != SCHEMA_VERSION:
            problems.append(f"schema_version is {version}, expected {SCHEMA_VERSION}")
        n, n_points = shard["points"].shape[:2]
        n_views, height, width = shard["images"].shape[1:4]
        expected = {
            "points": ((n, n_points, 3), np.float32), "normals": ((n, n_points, 3), np.float32),
            "images": ((n, n_views, height, width, 3), np.uint8), "masks": ((n, n_views, height, width), np.bool_),
            "view_matrices": ((n, n_views, 4, 4), np.float32), "proj_matrices": ((n, n_views, 4, 4), np.float32),
            "world_from_file": ((n, 4, 4), np.float64),
        }
        for name, (shape, dtype) in expected.items():
            dataset = shard[name]
            if dataset.shape != shape or dataset.dtype != dtype:
                problems.append(f"{name} is {dataset.shape} {dataset.dtype}, expected {shape} {np.dtype(dtype)}")
        if n == 0:
            problems.append("the shard holds no objects")
        object_ids = read_strings(shard["object_ids"])
        categories = read_strings(shard["categories"])
        if len(object_ids) != n or len(categories) != n or len(shard["source_paths"]) != n:
            problems.append(f"object_ids/categories/source_paths do not all have n={n} entries")
        if len(set(object_ids)) != len(object_ids):
            problems.append("object_ids are not unique")
        points = shard["points"][()]
        if not np.isfinite(points).all():
            problems.append("points contain non-finite values")
        radius = float(np.linalg.norm(points, axis=-1).max()) if points.size else 0.0
        if radius > 1.0 + 1e-4:
            problems.append(f"points reach radius {radius:.4f}, outside the unit sphere")
        normal_lengths = np.linalg.norm(shard["normals"][()], axis=-1)
        if points.size and not np.allclose(normal_lengths, 1.0, atol=1e-3):
            problems.append("normals are not unit length")
        for name in ("view_matrices", "proj_matrices"):
            if not np.isfinite(shard[name][()]).all():
                problems.append(f"{name} contain non-finite values")
        skipped = {name: read_strings(shard[f"skipped/{name}"]) for name in ("object_ids", "paths", "reasons")}
        if len({len(values) for values in skipped.values()}) != 1:
            problems.append("skipped/object_ids, paths and reasons differ in length")
        projection = {}
        # The projection check pairs views, projections and masks; with a shape problem listed
        # above they need not pair up, and the ShardError below reports it instead.
        for index in range(min(check_projection, n) if not problems else 0):
            fractions = fraction_on_mask_of(shard, index)
            projection[object_ids[index]] = float(fractions.min())
        blank = [object_ids[i] for i in range(n) if int(shard["masks"][i, 0].sum()) == 0]
        if blank:
            problems.append(f"{len(blank)} objects have an empty mask in view 0: {blank[:5]}")
        summary = {
            "path": str(path),
            "schema_version": version,
            "objects": n,
            "points_per_object": n_points,
            "views": n_views,
            "image_size": [height, width],
            "categories": {c: categories.count(c) for c in sorted(set(categories))},
            # strict=False: unequal lengths are already recorded in ``problems`` above and raised
            # as a ShardError listing every problem; the summary is discarded then.
            "skipped": [{"object_id": o, "path": p, "reason": r}
                        for o, p, r in zip(skipped["object_ids"], skipped["paths"], skipped["reasons"], strict=False)],
            "settings": json.loads(shard.attrs.get("settings", "{}")),
            "suite": shard.attrs.get("suite", ""),
            "file_mb": round(Path(path).stat().st_size / 2**20, 2),
        }
        if projection:
            summary["min_fraction_on_mask"] = projection
    if problems:
        raise ShardError(f"{path}: " + "; ".join(problems))
    return summary


def fraction_on_mask_of(shard: h5py.File, index: int) -> np.ndarray:
    """(V,) fraction of object ``index``'s points projecting onto its mask, per view."""
    return fraction_on_mask(shard["points"][index], shard["view_matrices"][index].astype(np.float64),
                            shard["proj_matrices"][index].astype(np.float64), shard["masks"][index])


def write_index(paths: list[Path], output: Path) -> dict[str, Any]:
    """Validate every shard and write an index (JSON): per shard its path, object count and
    skipped meshes, plus totals. Pre-training reads it to find the shards without opening them.

    Raises:
        ShardError: for the first invalid shard.
    """
    shards = []
    for path in paths:
        summary = validate_shard(path)
        shards.append({"path": str(path), "objects": summary["objects"], "skipped": summary["skipped"],
                       "categories": summary["categories"]})
    index = {
        "schema_version": SCHEMA_VERSION,
        "objects": sum(s["objects"] for s in shards),
        "skipped": sum(len(s["skipped"]) for s in shards),
        "shards": shards,
    }
    output = Path(output)
    write_json_atomically(output, index, sort_keys=False)
    return index
