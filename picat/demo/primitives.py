"""Mesh primitives of the synthetic shapes, and the builder that assembles them into a PartMesh.

Each primitive (box, deformed box, frustum, cylinder, ellipsoid, tube, panel, lathe) returns a
closed, outward-oriented ``Piece`` in world coordinates; a category recipe
(``picat.demo.recipes``) adds pieces to a ``Builder`` under part names and builds the
grounded, part-labelled mesh.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import trimesh

from picat.demo.part_mesh import PART_NAMES, PartMesh

# Number of sides of round primitives: enough to look round in a 224 px rendering while
# keeping objects at a few hundred to a few thousand faces.
SECTIONS = 24
SECTIONS_LARGE = 40
# Shapes with fewer faces are subdivided (see Builder.build).
_MIN_FACES = 200

# A piece is one closed primitive: (V, 3) float64 vertices and (F, 3) int64 faces.
Piece = tuple[np.ndarray, np.ndarray]
Vec = Sequence[float] | np.ndarray


def transform_piece(piece: Piece, matrix: np.ndarray) -> Piece:
    """Apply a 4x4 rigid or positive-scale transform (no mirroring, which would flip faces)."""
    vertices, faces = piece
    return vertices @ matrix[:3, :3].T + matrix[:3, 3], faces


def box(center: Vec, size: Vec) -> Piece:
    """Axis-aligned box with the given (3,) centre and (3,) edge lengths."""
    mesh = trimesh.creation.box(extents=np.asarray(size, dtype=np.float64))
    return mesh.vertices + np.asarray(center, dtype=np.float64), mesh.faces


def box_between(lo: Vec, hi: Vec) -> Piece:
    """Axis-aligned box spanning the (3,) corners ``lo`` and ``hi``."""
    lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
    return box((lo + hi) / 2, hi - lo)


def hexahedron(corners: np.ndarray) -> Piece:
    """A deformed box.

    Args:
        corners: (2, 2, 2, 3) corner positions indexed ``[ix, iy, iz]`` (0 = low side,
            1 = high side along the box's own x, y, z axes). The three edge directions
            must form a right-handed frame, otherwise the faces would point inwards.
    """
    cube = trimesh.creation.box(extents=(2.0, 2.0, 2.0))
    index = (cube.vertices > 0).astype(np.int64)
    return corners[index[:, 0], index[:, 1], index[:, 2]].astype(np.float64), cube.faces


def frustum(p0: Vec, p1: Vec, r0: float, r1: float, sections: int = SECTIONS) -> Piece:
    """Closed truncated cone (a cylinder if ``r0 == r1``) from ``p0`` (radius r0) to ``p1`` (radius r1)."""
    p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    if length <= 0 or r0 <= 0 or r1 <= 0:
        raise ValueError(f"frustum needs positive length and radii, got {length}, {r0}, {r1}")
    mesh = trimesh.creation.cylinder(radius=r0, height=length, sections=sections)
    vertices = mesh.vertices.copy()
    top = vertices[:, 2] > 0  # the cylinder spans z in [-length/2, length/2]
    vertices[top, :2] *= r1 / r0
    matrix = trimesh.geometry.align_vectors([0.0, 0.0, 1.0], axis / length)
    matrix[:3, 3] = (p0 + p1) / 2
    return transform_piece((vertices, mesh.faces), matrix)


def cylinder(p0: Vec, p1: Vec, radius: float, sections: int = SECTIONS) -> Piece:
    return frustum(p0, p1, radius, radius, sections)


def ellipsoid(center: Vec, radii: Vec, subdivisions: int = 2, matrix: np.ndarray | None = None) -> Piece:
    """Ellipsoid with (3,) semi-axes ``radii``, optionally rotated by a 4x4 ``matrix`` about its centre."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions)
    vertices = sphere.vertices * np.asarray(radii, dtype=np.float64)
    if matrix is not None:
        vertices = vertices @ matrix[:3, :3].T
    return vertices + np.asarray(center, dtype=np.float64), sphere.faces


def tube(p0: Vec, p1: Vec, r_min: float, r_max: float, sections: int = SECTIONS_LARGE) -> Piece:
    """Closed thick-walled tube (an annulus extruded from ``p0`` to ``p1``)."""
    p0, p1 = np.asarray(p0, dtype=np.float64), np.asarray(p1, dtype=np.float64)
    axis = p1 - p0
    length = float(np.linalg.norm(axis))
    annulus = trimesh.creation.annulus(r_min=r_min, r_max=r_max, height=length, sections=sections)
    matrix = trimesh.geometry.align_vectors([0.0, 0.0, 1.0], axis / length)
    matrix[:3, 3] = (p0 + p1) / 2
    return transform_piece((annulus.vertices, annulus.faces), matrix)


def panel(
    span0: Vec, span1: Vec, chord_dir: Vec, chords: tuple[float, float], thicknesses: tuple[float, float]
) -> Piece:
    """Tapered flat panel (wing, fin): a hexahedron between two cross-sections.

    Args:
        span0, span1: (3,) centres of the leading..trailing cross-section at each end.
        chord_dir: (3,) direction along the chord (roughly perpendicular to the span).
        chords: chord length at span0 and at span1.
        thicknesses: thickness at span0 and at span1.
    """
    span0, span1 = np.asarray(span0, dtype=np.float64), np.asarray(span1, dtype=np.float64)
    span = span1 - span0
    chord = np.asarray(chord_dir, dtype=np.float64)
    chord = chord - span * (chord @ span) / (span @ span)  # make it perpendicular to the span
    chord /= np.linalg.norm(chord)
    normal = np.cross(span, chord)  # (span, chord, normal) is right-handed by construction
    normal /= np.linalg.norm(normal)
    corners = np.empty((2, 2, 2, 3))
    for i, (end, c, t) in enumerate(zip((span0, span1), chords, thicknesses, strict=True)):
        for j, sc in enumerate((-0.5, 0.5)):
            for k, st in enumerate((-0.5, 0.5)):
                corners[i, j, k] = end + sc * c * chord + st * t * normal
    return hexahedron(corners)


def rot_y(angle: float) -> np.ndarray:
    """4x4 rotation by ``angle`` radians about +Y."""
    return trimesh.transformations.rotation_matrix(angle, [0.0, 1.0, 0.0])


def _subdivide(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split every triangle into four at its edge midpoints (the surface does not change).

    Midpoints are shared between the two faces of an edge, so closed pieces stay closed.

    Returns:
        (V + E, 3) vertices and (4F, 3) faces; new faces 4i..4i+3 come from face i and keep
        its orientation.
    """
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    unique, inverse = np.unique(edges, axis=0, return_inverse=True)
    mids = inverse.reshape(-1, 3) + len(vertices)  # columns: midpoints of ab, bc, ca
    a, b, c = faces.T
    ab, bc, ca = mids.T
    children = np.stack([np.stack(t, axis=1) for t in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))], axis=1)
    return np.concatenate([vertices, vertices[unique].mean(axis=1)]), children.reshape(-1, 3)


def _signed_volume(piece: Piece) -> float:
    vertices, faces = piece
    tri = vertices[faces]
    return float(np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6.0)


class Builder:
    """Collects labelled pieces of one shape and assembles them into a grounded PartMesh."""

    def __init__(self, category: str) -> None:
        self.category = category
        self.names = PART_NAMES[category]
        self.pieces: list[tuple[Piece, int]] = []

    def add(self, part: str, piece: Piece) -> None:
        # A non-positive volume means a generator bug (mirrored transform, inverted
        # hexahedron): catch it here rather than as black faces in a rendering.
        if not _signed_volume(piece) > 0:
            raise RuntimeError(f"{self.category}/{part}: primitive is inside-out or flat")
        self.pieces.append((piece, self.names.index(part)))

    def build(self) -> PartMesh:
        vertices, faces, labels, offset = [], [], [], 0
        for (v, f), label in self.pieces:
            vertices.append(v)
            faces.append(f + offset)
            labels.append(np.full(len(f), label, dtype=np.int64))
            offset += len(v)
        all_vertices, all_faces, all_labels = np.concatenate(vertices), np.concatenate(faces), np.concatenate(labels)
        # Box-only shapes have a few dozen faces; subdividing them keeps every object in
        # the few-hundred-faces range, so face-based crops (partial scans, room cut-outs)
        # are not too coarse. Round shapes are already finer than this and are untouched.
        while len(all_faces) < _MIN_FACES:
            all_vertices, all_faces = _subdivide(all_vertices, all_faces)
            all_labels = np.repeat(all_labels, 4)
        lo, hi = all_vertices.min(axis=0), all_vertices.max(axis=0)
        # Stand on the ground (min y = 0) and centre the footprint on the Y axis.
        all_vertices = all_vertices - np.array([(lo[0] + hi[0]) / 2, lo[1], (lo[2] + hi[2]) / 2])
        return PartMesh(all_vertices, all_faces, all_labels, self.category)


def lathe(profile: np.ndarray | Sequence[Sequence[float]], sections: int = SECTIONS_LARGE) -> Piece:
    """Closed surface of revolution about the Y axis (through the origin).

    Args:
        profile: (K, 2) points (radius, height) of the outline in the half-plane radius >= 0.
            Either both end points lie on the axis (radius 0) and the outline between them
            is revolved into a closed solid: a vase body from (0, 0) up the outside to
            (0, top), or a vessel with a floor from (0, 0) up the outside, over the rim and
            down the inside to (0, floor). Or neither does, and the outline is a closed
            loop revolved into a ring (a rim, a hollow neck). Points other than the axis
            end points need radius > 0; consecutive points must differ and the outline
            must not cross itself (neither is fixable here: it would not be a surface).
        sections: points per ring.

    Returns:
        The piece, outward-oriented whichever way the outline runs.
    """
    profile = np.asarray(profile, dtype=np.float64)
    if profile.ndim != 2 or profile.shape[1] != 2 or len(profile) < 3:
        raise ValueError(f"lathe profile must have shape (K >= 3, 2), got {profile.shape}")
    if not np.isfinite(profile).all():
        raise ValueError("lathe profile must be finite")
    on_axis = profile[[0, -1], 0] == 0
    if on_axis[0] != on_axis[1]:
        raise ValueError("lathe profile: either both end points lie on the axis (radius 0) or neither does")
    poles = bool(on_axis[0])
    rings = profile[1:-1] if poles else profile
    if (rings[:, 0] <= 0).any():
        raise ValueError("lathe profile: points other than axis end points need radius > 0")
    closing = np.diff(profile, axis=0) if poles else np.diff(np.vstack([profile, profile[:1]]), axis=0)
    if (np.abs(closing).max(axis=1) == 0).any():
        raise ValueError("lathe profile: consecutive points must differ")
    angle = 2 * np.pi * np.arange(sections) / sections
    ring_vertices = np.stack([
        rings[:, :1] * np.cos(angle), np.repeat(rings[:, 1:2], sections, axis=1), rings[:, :1] * np.sin(angle)
    ], axis=2).reshape(-1, 3)
    n_rings = len(rings)
    k = np.arange(sections)
    k1 = (k + 1) % sections
    faces = []
    pairs = [(i, i + 1) for i in range(n_rings - 1)] + ([] if poles else [(n_rings - 1, 0)])
    for i, j in pairs:  # quad (a_k, a_k+1, b_k+1, b_k) between rings i and j as two triangles
        a, b = i * sections, j * sections
        faces.append(np.stack([a + k, a + k1, b + k1], axis=1))
        faces.append(np.stack([a + k, b + k1, b + k], axis=1))
    vertices = ring_vertices
    if poles:
        start, end = len(vertices), len(vertices) + 1
        vertices = np.vstack([vertices, [[0.0, profile[0, 1], 0.0], [0.0, profile[-1, 1], 0.0]]])
        last = (n_rings - 1) * sections
        # Each fan runs its ring's edges the opposite way to the neighbouring quads.
        faces.append(np.stack([np.full(sections, start), k1, k], axis=1))
        faces.append(np.stack([np.full(sections, end), last + k, last + k1], axis=1))
    piece = (vertices, np.concatenate(faces).astype(np.int64))
    if _signed_volume(piece) < 0:
        piece = (vertices, piece[1][:, ::-1].copy())
    return piece


def scale_piece(piece: Piece, factors: Vec, center: Vec = (0.0, 0.0, 0.0)) -> Piece:
    """Scale a piece by positive (3,) ``factors`` about ``center`` (an ellipse from a circle; no mirroring)."""
    factors = np.asarray(factors, dtype=np.float64)
    if not (factors > 0).all():
        raise ValueError(f"scale factors must be positive, got {factors}")
    center = np.asarray(center, dtype=np.float64)
    vertices, faces = piece
    return (vertices - center) * factors + center, faces
