"""Camera geometry shared by rendering, sampling and pre-training.

One convention, used everywhere in picat (and documented in the README):

* World frame: the normalised mesh frame (mesh centred at the origin, inside the unit
  sphere), with the mesh file's own axes (ShapeNet and the demo meshes are Y-up).
* ``M_view`` (4x4) maps world to camera coordinates, OpenGL/Blender style: the camera looks
  down its -Z axis, +Y is up in the image, +X is to the right.
* ``M_proj`` (4x4) is an OpenGL perspective projection.
* With ``clip = M_proj @ M_view @ [x, y, z, 1]`` and ``ndc = clip[:3] / clip[3]``, the image
  position is ``u = (ndc_x + 1) / 2`` (left to right) and ``v = (1 - ndc_y) / 2`` (top to
  bottom), both in [0, 1] inside the image. Pixel (row, col) of an H x W image covers
  ``v * H`` in [row, row + 1) and ``u * W`` in [col, col + 1).
"""

from __future__ import annotations

import math

import numpy as np

GOLDEN_RATIO = (1.0 + math.sqrt(5.0)) / 2.0
AXES = {"x": np.array([1.0, 0.0, 0.0]), "y": np.array([0.0, 1.0, 0.0]), "z": np.array([0.0, 0.0, 1.0])}


def dodecahedron_vertices(radius: float = 1.0) -> np.ndarray:
    """The 20 vertices of a regular dodecahedron centred at the origin.

    Returns:
        (20, 3) float64 array, every row at distance ``radius`` from the origin, in a fixed
        order (the 8 cube vertices, then the three cyclic rectangles).
    """
    if radius <= 0:
        raise ValueError(f"radius must be positive, got {radius}")
    phi, inv = GOLDEN_RATIO, 1.0 / GOLDEN_RATIO
    cube = [(sx, sy, sz) for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)]
    rect = []
    for a in (-1, 1):
        for b in (-1, 1):
            rect += [(0.0, a * inv, b * phi), (a * inv, b * phi, 0.0), (a * phi, 0.0, b * inv)]
    vertices = np.array(cube + rect, dtype=np.float64)
    return vertices / math.sqrt(3.0) * radius


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray) -> np.ndarray:
    """World-to-camera matrix of a camera at ``eye`` looking at ``target``.

    Args:
        eye: (3,) camera centre in world coordinates.
        target: (3,) point the camera looks at.
        up: (3,) world direction that should appear upwards in the image; must not be
            parallel to the viewing direction.

    Returns:
        (4, 4) float64 ``M_view`` (camera looks down -Z, +Y up, +X right).
    """
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    forward = target - eye
    norm = np.linalg.norm(forward)
    if norm == 0:
        raise ValueError("eye and target coincide")
    forward /= norm
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-8:
        raise ValueError(f"up {up.tolist()} is parallel to the viewing direction {forward.tolist()}")
    right /= np.linalg.norm(right)
    true_up = np.cross(right, forward)
    rotation = np.stack([right, true_up, -forward])  # rows: camera axes in world coordinates
    view = np.eye(4)
    view[:3, :3] = rotation
    view[:3, 3] = -rotation @ eye
    return view


def perspective(fov_deg: float, aspect: float = 1.0, near: float = 0.1, far: float = 10.0) -> np.ndarray:
    """OpenGL perspective projection (vertical field of view ``fov_deg``).

    Returns:
        (4, 4) float64 ``M_proj``; points in front of the camera have clip w = -z_cam > 0.
    """
    if not 0 < fov_deg < 180:
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg}")
    if not 0 < near < far:
        raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
    f = 1.0 / math.tan(math.radians(fov_deg) / 2.0)
    proj = np.zeros((4, 4))
    proj[0, 0] = f / aspect
    proj[1, 1] = f
    proj[2, 2] = (far + near) / (near - far)
    proj[2, 3] = 2.0 * far * near / (near - far)
    proj[3, 2] = -1.0
    return proj


def dodecahedron_cameras(
    distance: float, fov_deg: float, up_axis: str = "y", near: float = 0.1, far: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """The 20 cameras of the paper: on the dodecahedron's vertices, looking at the origin.

    Args:
        distance: camera distance from the origin (the object fits the unit sphere).
        fov_deg: field of view; the unit sphere is fully visible when
            ``fov_deg >= 2 * asin(1 / distance)``.
        up_axis: world axis ("x", "y" or "z") that points up in the images.

    Returns:
        view_matrices (20, 4, 4) and proj_matrices (20, 4, 4), float64.
    """
    if up_axis not in AXES:
        raise ValueError(f"up_axis must be one of {sorted(AXES)}, got {up_axis!r}")
    if distance <= 1.0:
        raise ValueError(f"camera distance must exceed the unit sphere's radius, got {distance}")
    up = AXES[up_axis]
    views = np.stack([look_at(eye, np.zeros(3), up) for eye in dodecahedron_vertices(distance)])
    proj = np.broadcast_to(perspective(fov_deg, 1.0, near, far), (20, 4, 4)).copy()
    return views, proj


# Camera sets: the paper's 20 dodecahedron vertices, or the 8 of them that are a cube's
# vertices (dodecahedron_vertices lists those first): evenly spread too, and 2.5x fewer
# renders, for a CPU-scale suite (README "Deviations").
CAMERA_SETS = {"dodecahedron": 20, "cube": 8}


def camera_set(distance: float, fov_deg: float, up_axis: str = "y",
               cameras: str = "dodecahedron") -> tuple[np.ndarray, np.ndarray]:
    """The cameras a render setting names: ``dodecahedron_cameras`` or their first (cube) 8.

    Returns:
        view_matrices (V, 4, 4) and proj_matrices (V, 4, 4), float64, V = ``CAMERA_SETS[cameras]``.
    """
    if cameras not in CAMERA_SETS:
        raise ValueError(f"render.cameras must be one of {sorted(CAMERA_SETS)}, got {cameras!r}")
    views, projs = dodecahedron_cameras(distance, fov_deg, up_axis)
    count = CAMERA_SETS[cameras]
    return views[:count], projs[:count]


def project_points(points: np.ndarray, view: np.ndarray, proj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project world points to normalised image coordinates.

    Args:
        points: (..., N, 3) world coordinates.
        view: (..., 4, 4) world-to-camera matrices.
        proj: (..., 4, 4) projection matrices.

    Returns:
        uv (..., N, 2) with u left-to-right and v top-to-bottom, in [0, 1] inside the image;
        in_front (..., N) bool, True where the point is in front of the camera (clip w > 0).
    """
    points = np.asarray(points, dtype=np.float64)
    homogeneous = np.concatenate([points, np.ones(points.shape[:-1] + (1,))], axis=-1)
    clip = homogeneous @ np.swapaxes(np.asarray(proj) @ np.asarray(view), -1, -2)
    w = clip[..., 3]
    in_front = w > 1e-9
    safe_w = np.where(in_front, w, 1.0)[..., None]
    ndc = clip[..., :2] / safe_w
    uv = np.stack([(ndc[..., 0] + 1.0) / 2.0, (1.0 - ndc[..., 1]) / 2.0], axis=-1)
    return uv, in_front


def uv_to_pixels(uv: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel (row, col) under each uv position, and whether it lies inside the image.

    Args:
        uv: (..., 2) normalised image coordinates.

    Returns:
        rows (...), cols (...) int64 (clipped into the image so they can index it) and
        inside (...) bool; callers must use ``inside`` rather than the clipped indices.
    """
    cols = np.floor(uv[..., 0] * width).astype(np.int64)
    rows = np.floor(uv[..., 1] * height).astype(np.int64)
    inside = (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    return np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1), inside


def camera_to_world(view: np.ndarray) -> np.ndarray:
    """Inverse of a rigid ``M_view``: the camera pose in world coordinates, (4, 4)."""
    view = np.asarray(view, dtype=np.float64)
    pose = np.eye(4)
    rotation = view[:3, :3]
    pose[:3, :3] = rotation.T
    pose[:3, 3] = -rotation.T @ view[:3, 3]
    return pose


def intrinsics_matrix(fov_deg: float, width: int, height: int) -> np.ndarray:
    """Pinhole K (3x3, pixels) equivalent to ``perspective(fov_deg)`` for a square-pixel image.

    The principal point is the image centre in pixel-index coordinates, ((W-1)/2, (H-1)/2),
    the convention BlenderProc's ``set_intrinsics_from_K_matrix`` takes as "no shift".
    """
    focal = (height / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def dilate_masks(masks: np.ndarray, radius: int) -> np.ndarray:
    """Grow (..., H, W) boolean masks by ``radius`` pixels (square neighbourhood)."""
    if radius <= 0:
        return np.asarray(masks, dtype=bool)
    masks = np.asarray(masks, dtype=bool)
    height, width = masks.shape[-2:]
    padded = np.pad(masks, [(0, 0)] * (masks.ndim - 2) + [(radius, radius)] * 2)
    grown = np.zeros_like(masks)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            grown |= padded[..., dy : dy + height, dx : dx + width]
    return grown


def fraction_on_mask(
    points: np.ndarray, views: np.ndarray, projs: np.ndarray, masks: np.ndarray, tolerance_px: int = 1
) -> np.ndarray:
    """Per view, the fraction of points that project onto (or next to) object pixels.

    The check that ties sampled points, saved cameras and renders together: with the right
    frames it is close to 1 for every view (visible or occluded, a surface point projects
    inside the object's silhouette). A mask pixel is one the object covers by more than half,
    so points on the outline (surfaces seen edge-on, thin parts) land outside it about half
    of the time even with exact geometry; ``tolerance_px`` counts a point as a hit when a
    mask pixel lies within that many pixels. A frame error (a Y-up/Z-up turn, a wrong
    scale or centre) moves points by many pixels and fails either way.

    Args:
        points: (N, 3) world points. views, projs: (V, 4, 4). masks: (V, H, W) bool.
        tolerance_px: 0 for the strict test.

    Returns:
        (V,) float64 fractions; points behind a camera or outside the image count as misses.
    """
    masks = dilate_masks(masks, tolerance_px)
    height, width = masks.shape[-2:]
    fractions = np.empty(len(views))
    for view_index, (view, proj, mask) in enumerate(zip(views, projs, masks, strict=True)):
        uv, in_front = project_points(points, view, proj)
        rows, cols, inside = uv_to_pixels(uv, height, width)
        hits = in_front & inside & mask[rows, cols]
        fractions[view_index] = hits.mean()
    return fractions
