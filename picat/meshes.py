"""Loading, validating, normalising and sampling meshes (OBJ, OFF, PLY, STL via trimesh).

Every mesh, whatever its source, is brought into picat's world frame the same way: the
centre of the bounding box of its face-referenced vertices goes to the origin and the
farthest such vertex to distance 1 (the unit sphere). Renders and sampled points both use
this frame, so the saved cameras project the points onto the rendered object.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trimesh

from picat.atomic import atomic_path

SUPPORTED_SUFFIXES = (".obj", ".off", ".ply", ".stl")


class MeshError(ValueError):
    """A mesh that cannot be used; the message names the file and the reason."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass(frozen=True)
class LoadedMesh:
    """A validated triangle mesh in its file's coordinates.

    Attributes:
        vertices: (V, 3) float64, as stored in the file.
        faces: (F, 3) int64 indices into ``vertices``.
        world_from_file: (4, 4) float64 similarity transform into picat's world frame.
    """

    path: str
    vertices: np.ndarray
    faces: np.ndarray
    world_from_file: np.ndarray

    def world_vertices(self) -> np.ndarray:
        """(V, 3) vertices in the normalised world frame."""
        return self.vertices @ self.world_from_file[:3, :3].T + self.world_from_file[:3, 3]


def load_mesh(path: Path | str) -> LoadedMesh:
    """Read a mesh file, check it and compute its normalisation.

    trimesh reads ModelNet's broken OFF header (``OFF3514 3546 0`` on one line) as it is.
    Multi-part files (ShapeNet OBJ with several groups) are concatenated into one mesh.
    Vertices are not merged or reordered (``process=False``) so the file's geometry is
    exactly what Blender imports.

    Raises:
        MeshError: unreadable file, unsupported format, no vertices, no faces, non-finite
            vertices, or zero surface area.
    """
    path = Path(path)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise MeshError(path, f"unsupported mesh format {path.suffix!r} (expected one of {SUPPORTED_SUFFIXES})")
    if not path.is_file():
        raise MeshError(path, "file does not exist")
    try:
        loaded = trimesh.load(str(path), process=False, skip_materials=True)
    except Exception as error:  # trimesh raises many types for malformed files
        raise MeshError(path, f"cannot be read: {type(error).__name__}: {error}") from error
    if isinstance(loaded, trimesh.PointCloud):
        raise MeshError(path, f"mesh has no faces (only {len(loaded.vertices)} points)")
    if isinstance(loaded, trimesh.Scene):
        parts = [geometry for geometry in loaded.geometry.values() if isinstance(geometry, trimesh.Trimesh)]
        if not parts:
            raise MeshError(path, "mesh is empty (no triangle geometry)")
        # to_mesh applies the scene graph's transforms (identity for OBJ groups) and concatenates.
        mesh = loaded.to_mesh()
    elif isinstance(loaded, trimesh.Trimesh):
        mesh = loaded
    else:
        raise MeshError(path, f"contains no triangle mesh (read as {type(loaded).__name__})")
    vertices = np.asarray(mesh.vertices, dtype=np.float64)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    if len(vertices) == 0:
        raise MeshError(path, "mesh is empty (no vertices)")
    if faces.ndim != 2 or len(faces) == 0:
        raise MeshError(path, "mesh has no faces")
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise MeshError(path, "faces index vertices that do not exist")
    used = vertices[np.unique(faces)]
    if not np.isfinite(used).all():
        raise MeshError(path, f"{int((~np.isfinite(used)).any(axis=1).sum())} vertices are not finite (NaN or inf)")
    world_from_file = normalisation_transform(used)
    area = float(mesh.area) if np.isfinite(mesh.area) else 0.0
    if area <= 0:
        raise MeshError(path, "mesh has zero surface area")
    return LoadedMesh(str(path), vertices, faces, world_from_file)


def normalisation_transform(points: np.ndarray) -> np.ndarray:
    """Similarity transform that centres ``points`` (bounding-box centre) into the unit sphere.

    Args:
        points: (V, 3) finite vertices.

    Returns:
        (4, 4) float64 matrix ``T`` with ``T @ [p, 1]`` inside the unit sphere, the farthest
        point on it.
    """
    low, high = points.min(axis=0), points.max(axis=0)
    centre = (low + high) / 2.0
    radius = float(np.linalg.norm(points - centre, axis=1).max())
    if not radius > 0:
        raise ValueError("all vertices coincide: the mesh has no extent")
    transform = np.eye(4)
    transform[:3, :3] *= 1.0 / radius
    transform[:3, 3] = -centre / radius
    return transform


def sample_surface(mesh: LoadedMesh, n_points: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Area-weighted uniform surface samples with their face normals, in the world frame.

    Args:
        mesh: a validated mesh.
        n_points: number of samples N.
        seed: seed of the sampler; the same (mesh, N, seed) gives the same points.

    Returns:
        points (N, 3) float32 and unit normals (N, 3) float32 in the normalised world frame.
    """
    if n_points <= 0:
        raise ValueError(f"n_points must be positive, got {n_points}")
    world = trimesh.Trimesh(mesh.world_vertices(), mesh.faces, process=False)
    points, face_index = trimesh.sample.sample_surface(world, n_points, seed=seed)
    normals = world.face_normals[face_index]
    return points.astype(np.float32), normals.astype(np.float32)


def write_obj(vertices: np.ndarray, faces: np.ndarray, path: Path) -> None:
    """Write a plain triangle OBJ (used to hand OFF/PLY/STL meshes to Blender's OBJ importer).

    Args:
        vertices: (V, 3) float coordinates. faces: (F, 3) 0-based int indices.
    """
    with atomic_path(Path(path)) as tmp, open(tmp, "w") as handle:
        handle.write("".join(f"v {x:.9g} {y:.9g} {z:.9g}\n" for x, y, z in vertices))
        handle.write("".join(f"f {a + 1} {b + 1} {c + 1}\n" for a, b, c in faces))
