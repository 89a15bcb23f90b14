"""Visibility for the virtual scanner: what a camera sees of a scene's surface samples.

Hidden-point removal (Katz, Tal, Basri 2007, with scipy's Qhull) on a dense surface sample
after dropping back faces decides what the camera sees of the object and the neighbours near
the crops; a cheaper direction test (``occluded``) handles the floor, the wall and far
occluders. Measured against exact ray casting, 98 % of the object points and 99.9 % of the
floor and wall points kept are visible, and nearly all the rest lie within a sample spacing
behind the surface that hides them. trimesh's ray casting needs rtree or embree, neither of
which is a dependency.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import ConvexHull, cKDTree

# Katz et al.'s spherical-flip radius is 10**HPR_GAMMA times the farthest point. 2.0 was
# chosen against exact ray casting on the 13 categories: with back-face culling, about
# 97 % of the points it keeps are visible and it keeps about 93 % of the visible ones
# (3.0: 87 % / 99 %; 1.5: 99 % / 83 %).
HPR_GAMMA = 2.0
# occluded: a point is hidden when one of the _OCCLUSION_NEIGHBOURS occluder samples
# nearest in direction covers it (its cone is _OCCLUSION_RADIUS sample spacings wide
# where it stands) and is in front by more than _DEPTH_SLACK spacings (plus its own
# surface's depth span, the incidence angle's tangent capped at _MAX_TANGENT). 2.0
# rather than 1.5 or 1.0: fewer floor points seen through gaps between samples, for a
# slightly wider hidden band along silhouettes.
_OCCLUSION_NEIGHBOURS = 4
_OCCLUSION_RADIUS = 2.0
_DEPTH_SLACK = 0.5
_MAX_TANGENT = 5.0


def segments_hit_box(start: np.ndarray, ends: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(M,) bool: whether the segments from ``start`` (3,) to ``ends`` (M, 3) meet the box [lo, hi]."""
    direction = ends - start
    with np.errstate(divide="ignore", invalid="ignore"):  # axis-parallel segments: handled below
        t0, t1 = (lo - start) / direction, (hi - start) / direction
    inside = (start >= lo) & (start <= hi)  # per axis, for segments parallel to it
    t_near = np.where(direction == 0, np.where(inside, -np.inf, np.inf), np.minimum(t0, t1)).max(axis=1)
    t_far = np.where(direction == 0, np.where(inside, np.inf, -np.inf), np.maximum(t0, t1)).min(axis=1)
    return np.maximum(t_near, 0.0) <= np.minimum(t_far, 1.0)


def hidden_point_removal(points: np.ndarray, viewpoint: np.ndarray, gamma: float = HPR_GAMMA) -> np.ndarray:
    """Points of a dense surface sample visible from ``viewpoint`` (Katz, Tal, Basri 2007).

    Spherical flipping about a sphere of radius ``10**gamma`` times the farthest point,
    then the convex hull (scipy / Qhull) of the flipped points and the viewpoint: the
    points on the hull are the visible ones.

    Args:
        points: (M, 3) surface samples, M >= 4, not all on one plane through the viewpoint.
        viewpoint: (3,) camera position, not on the surface.

    Returns:
        (M,) bool visibility.
    """
    relative = np.asarray(points, dtype=np.float64) - np.asarray(viewpoint, dtype=np.float64)
    norm = np.linalg.norm(relative, axis=1, keepdims=True)
    sphere = float(norm.max()) * 10.0**gamma
    flipped = relative + 2.0 * (sphere - norm) * relative / norm
    hull = ConvexHull(np.vstack([flipped, np.zeros((1, 3))]))
    visible = np.zeros(len(points), dtype=bool)
    vertices = hull.vertices
    visible[vertices[vertices < len(points)]] = True
    return visible


def facing(points: np.ndarray, normals: np.ndarray, camera: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the points whose surface faces ``camera``, and the cosine of their incidence."""
    to_camera = camera - points
    cosine = np.einsum("ij,ij->i", to_camera, normals) / np.linalg.norm(to_camera, axis=1)
    front = np.flatnonzero(cosine > 0)
    return front, cosine[front]


def occluded(
    points: np.ndarray, occluders: np.ndarray, spacing: np.ndarray, camera: np.ndarray, cosine: np.ndarray | None = None
) -> np.ndarray:
    """(P,) bool: points hidden behind (O, 3) occluder samples, seen from ``camera``.

    A surface sample spaced ``spacing`` (O,) from its neighbours covers a cone of about
    ``spacing / distance`` around its direction; a point is hidden when one of those
    cones contains its direction and is clearly in front of it. "Clearly" is half a
    spacing, plus, when the occluders may include the point's own surface, the depth
    that surface spans across such a cone (it grows with the incidence angle, whose (P,)
    ``cosine`` is then given), so a surface does not hide itself. Directions are
    compared as unit vectors with a k-d tree (scipy).

    This is a cheap complement to hidden-point removal for what would only grow its hull:
    the floor and wall (often larger than the object, and hiding nothing; measured
    against exact ray casting, 99.9 % of the floor and wall points kept are visible) and
    the far parts of neighbours (which only hide).
    """
    if not len(points) or not len(occluders):
        return np.zeros(len(points), dtype=bool)
    occluder_rays = occluders - camera
    occluder_distance = np.linalg.norm(occluder_rays, axis=1)
    rays = points - camera
    distance = np.linalg.norm(rays, axis=1)
    k = min(_OCCLUSION_NEIGHBOURS, len(occluders))
    angle, index = cKDTree(occluder_rays / occluder_distance[:, None]).query(rays / distance[:, None], k=k)
    angle, index = angle.reshape(len(points), k), index.reshape(len(points), k)
    covers = angle < _OCCLUSION_RADIUS * spacing[index] / occluder_distance[index]
    if cosine is None:
        tangent = np.zeros(len(points))
    else:
        tangent = np.minimum(np.sqrt(np.maximum(1.0 - cosine**2, 0.0)) / np.maximum(cosine, 1e-6), _MAX_TANGENT)
    own_depth = spacing[index] * (_DEPTH_SLACK + _OCCLUSION_RADIUS * tangent[:, None])
    in_front = occluder_distance[index] < distance[:, None] - own_depth
    return (covers & in_front).any(axis=1)


def in_view_of(triangles: np.ndarray, camera: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """(F,) bool: triangles (F, 3, 3) that may lie in or in front of the box [lo, hi] seen from ``camera``.

    Conservative test on bounding spheres against the cone from the camera around the
    box (whole faces are kept: clipping them exactly with trimesh's slice_mesh_plane
    needs shapely, and samples outside the crops are dropped with the crop anyway).
    """
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])]) - camera
    axis = ((lo + hi) / 2 - camera) / np.linalg.norm((lo + hi) / 2 - camera)
    corner_distance = np.linalg.norm(corners, axis=1)
    half_angle = float(np.arccos(np.clip(corners @ axis / corner_distance, -1.0, 1.0)).max())
    centres = triangles.mean(axis=1) - camera
    radii = np.linalg.norm(triangles - (centres + camera)[:, None, :], axis=2).max(axis=1)
    distance = np.maximum(np.linalg.norm(centres, axis=1), 1e-12)
    angle = np.arccos(np.clip(centres @ axis / distance, -1.0, 1.0))
    slack = np.arcsin(np.clip(radii / distance, 0.0, 1.0))
    return (angle <= half_angle + slack) & (distance - radii <= corner_distance.max())
