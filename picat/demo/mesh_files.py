"""Mesh file output: a PartMesh as a Wavefront OBJ plus its per-face part labels, and reading the labels back."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from picat.atomic import atomic_path
from picat.demo.part_mesh import PartMesh


def labels_path(obj_path: Path) -> Path:
    """Where ``save_part_mesh`` puts the per-face labels of ``obj_path``: ``<stem>.labels.npy``."""
    obj_path = Path(obj_path)
    return obj_path.with_name(f"{obj_path.stem}.labels.npy")


def save_part_mesh(mesh: PartMesh, obj_path: Path) -> None:
    """Write ``mesh`` as a Wavefront OBJ plus its face labels as ``<stem>.labels.npy``.

    The OBJ holds only ``v`` and triangular ``f`` lines (1-based) in the mesh's own order,
    so ``trimesh.load(obj_path, process=False)`` gives back the same vertices and faces.
    The labels are written first: whoever sees the OBJ can rely on its labels existing.
    """
    obj_path = Path(obj_path)
    # 9 significant digits round-trip float32 exactly, which is all a renderer uses.
    lines = [f"# picat synthetic {mesh.category}: parts {' '.join(mesh.part_names)}"]
    lines += [f"v {x:.9g} {y:.9g} {z:.9g}" for x, y, z in mesh.vertices.tolist()]
    lines += [f"f {a} {b} {c}" for a, b, c in (mesh.faces + 1).tolist()]
    text = ("\n".join(lines) + "\n").encode("ascii")
    labels = np.ascontiguousarray(mesh.face_labels, dtype=np.int64)
    with atomic_path(labels_path(obj_path)) as temporary, open(temporary, "wb") as handle:
        np.save(handle, labels)  # through a handle: np.save would append ".npy" to a path lacking it
    with atomic_path(obj_path) as temporary:
        temporary.write_bytes(text)


def _count_obj_faces(obj_path: Path) -> int:
    with open(obj_path, "rb") as handle:
        return sum(1 for line in handle if line.startswith(b"f "))


def load_part_labels(obj_path: Path) -> np.ndarray:
    """Read the per-face labels that ``save_part_mesh`` wrote beside ``obj_path``.

    Returns:
        (F,) int64 part index of each face, in the OBJ's face order.

    Raises:
        FileNotFoundError: the labels file (or the OBJ) is missing.
        ValueError: the labels are not a 1-D integer array with one entry per ``f`` line.
    """
    obj_path = Path(obj_path)
    path = labels_path(obj_path)
    if not path.is_file():
        raise FileNotFoundError(f"no part labels for {obj_path}: expected {path}")
    if not obj_path.is_file():
        raise FileNotFoundError(f"mesh {obj_path} is missing (its labels {path} exist)")
    labels = np.load(path, allow_pickle=False)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path} must hold a 1-D integer array, got {labels.dtype} with shape {labels.shape}")
    n_faces = _count_obj_faces(obj_path)
    if len(labels) != n_faces:
        raise ValueError(f"{path} has {len(labels)} labels but {obj_path} has {n_faces} faces")
    return labels.astype(np.int64)
