import itertools
import math

import numpy as np
import pytest

from picat import geometry


def test_dodecahedron_is_regular():
    vertices = geometry.dodecahedron_vertices(2.0)
    assert vertices.shape == (20, 3)
    np.testing.assert_allclose(np.linalg.norm(vertices, axis=1), 2.0)
    distances = np.array([np.linalg.norm(a - b) for a, b in itertools.combinations(vertices, 2)])
    edge = distances.min()
    # A regular dodecahedron has 30 edges of equal length, each vertex on exactly three.
    assert np.isclose(distances, edge).sum() == 30
    degree = [(np.isclose(np.linalg.norm(vertices - v, axis=1), edge)).sum() for v in vertices]
    assert set(degree) == {3}
    np.testing.assert_allclose(vertices.mean(axis=0), 0.0, atol=1e-12)


def test_look_at_centre_projects_to_image_centre_and_up_is_up():
    views, projs = geometry.dodecahedron_cameras(2.5, 50.0, "y")
    for view, proj in zip(views, projs, strict=True):
        uv, in_front = geometry.project_points(np.array([[0.0, 0.0, 0.0], [0.0, 0.3, 0.0]]), view, proj)
        assert in_front.all()
        np.testing.assert_allclose(uv[0], [0.5, 0.5], atol=1e-12)
        # A point above the centre (world +Y) appears higher in the image (smaller v),
        # unless the camera looks almost straight along Y.
        eye = geometry.camera_to_world(view)[:3, 3]
        if abs(eye[1]) / np.linalg.norm(eye) < 0.9:
            assert uv[1, 1] < uv[0, 1]


def test_view_matrix_is_rigid_and_inverts():
    view = geometry.look_at(np.array([1.0, 2.0, 3.0]), np.zeros(3), np.array([0.0, 1.0, 0.0]))
    rotation = view[:3, :3]
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(rotation), 1.0)
    pose = geometry.camera_to_world(view)
    np.testing.assert_allclose(pose @ view, np.eye(4), atol=1e-12)
    np.testing.assert_allclose(pose[:3, 3], [1, 2, 3])
    # The camera looks down its -Z axis: the target is at negative camera z.
    assert (view @ np.array([0, 0, 0, 1.0]))[2] < 0


def test_unit_sphere_fits_the_image():
    distance, fov = 2.5, 50.0
    assert fov >= math.degrees(2 * math.asin(1 / distance))
    views, projs = geometry.dodecahedron_cameras(distance, fov)
    sphere = np.random.default_rng(0).normal(size=(2000, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)
    for view, proj in zip(views, projs, strict=True):
        uv, in_front = geometry.project_points(sphere, view, proj)
        assert in_front.all() and (uv > 0).all() and (uv < 1).all()


def test_projection_matches_pinhole_intrinsics():
    view = geometry.look_at(np.array([0.0, 0.0, 3.0]), np.zeros(3), np.array([0.0, 1.0, 0.0]))
    proj = geometry.perspective(40.0)
    points = np.random.default_rng(1).uniform(-0.5, 0.5, size=(50, 3))
    uv, _ = geometry.project_points(points, view, proj)
    K = geometry.intrinsics_matrix(40.0, 224, 224)
    camera = (np.c_[points, np.ones(50)] @ view.T)[:, :3]
    # OpenCV-style pixel coordinates: x right, y down, camera looking down +Z.
    pixel = (np.c_[camera[:, 0], -camera[:, 1], -camera[:, 2]] @ K.T)
    pixel = pixel[:, :2] / pixel[:, 2:]
    # Pixel-index coordinates have pixel centres at integers: u * W - 0.5.
    np.testing.assert_allclose(uv * 224 - 0.5, pixel, atol=1e-9)


def test_uv_to_pixels_marks_outside():
    rows, cols, inside = geometry.uv_to_pixels(np.array([[0.0, 0.0], [0.999, 0.5], [1.0, 0.5], [-0.01, 0.2]]), 224, 224)
    assert inside.tolist() == [True, True, False, False]
    assert (rows[0], cols[0]) == (0, 0) and cols[1] == 223 and rows[1] == 112


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="up_axis"):
        geometry.dodecahedron_cameras(2.5, 50.0, "w")
    with pytest.raises(ValueError, match="parallel"):
        geometry.look_at(np.array([0, 2.0, 0]), np.zeros(3), np.array([0, 1.0, 0]))
    with pytest.raises(ValueError, match="distance"):
        geometry.dodecahedron_cameras(0.5, 50.0)


def test_fraction_on_mask_counts_hits_and_tolerance():
    view = geometry.look_at(np.array([0.0, 0.0, 3.0]), np.zeros(3), np.array([0.0, 1.0, 0.0]))
    proj = geometry.perspective(40.0)
    points = np.random.default_rng(0).uniform(-0.3, 0.3, size=(30, 3)) * [1, 1, 0]
    uv, _ = geometry.project_points(points, view, proj)
    rows, cols, _ = geometry.uv_to_pixels(uv, 64, 64)
    mask = np.zeros((1, 64, 64), bool)
    mask[0, rows, cols] = True
    assert geometry.fraction_on_mask(points, view[None], proj[None], mask, tolerance_px=0)[0] == 1.0
    shifted = np.roll(mask, 1, axis=2)  # one pixel off: fails strictly, passes with 1 px tolerance
    assert geometry.fraction_on_mask(points, view[None], proj[None], shifted, tolerance_px=0)[0] < 0.9
    assert geometry.fraction_on_mask(points, view[None], proj[None], shifted, tolerance_px=1)[0] == 1.0
    far = np.roll(mask, 5, axis=2)
    assert geometry.fraction_on_mask(points, view[None], proj[None], far, tolerance_px=1)[0] < 0.5
    behind = points + [0, 0, 5.0]  # behind the camera: never a hit
    assert geometry.fraction_on_mask(behind, view[None], proj[None], np.ones((1, 64, 64), bool))[0] == 0.0


def test_cube_camera_set_is_the_eight_dodecahedron_cameras_on_a_cube():
    from picat.geometry import CAMERA_SETS, camera_set

    all_views, all_projs = geometry.dodecahedron_cameras(2.5, 50.0)
    views, projs = camera_set(2.5, 50.0, "y", "cube")
    assert views.shape == (CAMERA_SETS["cube"], 4, 4) == (8, 4, 4)
    np.testing.assert_array_equal(views, all_views[:8])
    np.testing.assert_array_equal(projs, all_projs[:8])
    eyes = np.stack([-v[:3, :3].T @ v[:3, 3] for v in views])  # camera centres from M_view
    np.testing.assert_allclose(np.abs(eyes), 2.5 / np.sqrt(3.0), atol=1e-9)  # (+-1, +-1, +-1) scaled: a cube
    cosines = (eyes @ eyes.T / 2.5**2)[~np.eye(8, dtype=bool)]
    assert cosines.max() < 0.34  # no two cameras closer than ~70 degrees: spread over the sphere
    np.testing.assert_array_equal(camera_set(2.5, 50.0, "y")[0], all_views)  # the default is the paper's 20
    with pytest.raises(ValueError, match="render.cameras"):
        camera_set(2.5, 50.0, "y", "octahedron")
