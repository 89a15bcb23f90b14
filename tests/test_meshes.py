from pathlib import Path

import numpy as np
import pytest

from picat.meshes import MeshError, load_mesh, normalisation_transform, sample_surface, write_obj

CUBE_OBJ = """v 0 0 0\nv 2 0 0\nv 2 2 0\nv 0 2 0\nv 0 0 2\nv 2 0 2\nv 2 2 2\nv 0 2 2
f 1 3 2\nf 1 4 3\nf 5 6 7\nf 5 7 8\nf 1 2 6\nf 1 6 5\nf 2 3 7\nf 2 7 6\nf 3 4 8\nf 3 8 7\nf 4 1 5\nf 4 5 8
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_normalisation_centres_into_unit_sphere(tmp_path):
    mesh = load_mesh(write(tmp_path, "cube.obj", CUBE_OBJ))
    world = mesh.world_vertices()
    np.testing.assert_allclose((world.min(0) + world.max(0)) / 2, 0.0, atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(world, axis=1).max(), 1.0)


def test_sampling_is_area_weighted_deterministic_and_on_surface(tmp_path):
    # Two separate squares, areas 1 and 9: about 10% of the samples on the small one.
    text = ("v 0 0 0\nv 1 0 0\nv 1 1 0\nv 0 1 0\nv 5 0 0\nv 8 0 0\nv 8 3 0\nv 5 3 0\n"
            "f 1 2 3\nf 1 3 4\nf 5 6 7\nf 5 7 8\n")
    mesh = load_mesh(write(tmp_path, "squares.obj", text))
    points, normals = sample_surface(mesh, 20000, seed=3)
    assert points.shape == (20000, 3) and points.dtype == np.float32
    file_points = (points - mesh.world_from_file[:3, 3]) / mesh.world_from_file[0, 0]
    small = (file_points[:, 0] <= 1 + 1e-4).mean()
    assert abs(small - 0.1) < 0.01
    np.testing.assert_allclose(np.abs(normals[:, 2]), 1.0, atol=1e-6)
    again, _ = sample_surface(mesh, 20000, seed=3)
    np.testing.assert_array_equal(points, again)
    other, _ = sample_surface(mesh, 20000, seed=4)
    assert not np.array_equal(points, other)


@pytest.mark.parametrize(
    "name, text, reason",
    [
        ("garbage.off", "this is not a mesh\n\x00\x01", "cannot be read|no vertices|no faces|empty"),
        ("empty.off", "OFF\n0 0 0\n", "empty|no faces"),
        ("empty.obj", "", "empty|no faces"),
        ("points.obj", "v 0 0 0\nv 1 0 0\nv 0 1 0\n", "no faces"),
        ("nan.obj", "v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n", "not finite"),
        ("flat.obj", "v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "zero surface area"),
        ("mesh.xyz", "1 2 3\n", "unsupported mesh format"),
    ],
)
def test_bad_meshes_raise_one_clear_error(tmp_path, name, text, reason):
    path = write(tmp_path, name, text)
    with pytest.raises(MeshError, match=reason) as error:
        load_mesh(path)
    assert str(path) in str(error.value)


def test_missing_file(tmp_path):
    with pytest.raises(MeshError, match="does not exist"):
        load_mesh(tmp_path / "nope.obj")


def test_broken_modelnet_off_header_is_read(tmp_path):
    broken = write(tmp_path, "broken.off", "OFF4 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n3 0 2 3\n")
    fixed = write(tmp_path, "fixed.off", "OFF\n4 2 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n3 0 2 3\n")
    a, b = load_mesh(broken), load_mesh(fixed)
    np.testing.assert_array_equal(a.vertices, b.vertices)
    np.testing.assert_array_equal(a.faces, b.faces)


def test_write_obj_round_trip(tmp_path):
    mesh = load_mesh(write(tmp_path, "cube.obj", CUBE_OBJ))
    write_obj(mesh.vertices, mesh.faces, tmp_path / "copy.obj")
    copy = load_mesh(tmp_path / "copy.obj")
    np.testing.assert_allclose(copy.vertices, mesh.vertices)
    np.testing.assert_array_equal(copy.faces, mesh.faces)
    assert not list(tmp_path.glob(".*.tmp-*"))


def test_normalisation_of_coincident_points():
    with pytest.raises(ValueError, match="coincide"):
        normalisation_transform(np.ones((3, 3)))


# --- genuine dataset samples -------------------------------------------------------------

def test_genuine_modelnet_off_broken_header_matches_fixed_copy(fixtures):
    broken_dir = fixtures / "modelnet_off/OFF2Multiview/dataset_samples/bathtub"
    fixed_dir = fixtures / "modelnet_off/OFF2MAT/ModelNet10/bathtub/train"
    for name in ("bathtub_0001.off", "bathtub_0002.off", "bathtub_0003.off"):
        assert ((broken_dir / name).read_text().startswith("OFF")
                and not (broken_dir / name).read_text().startswith("OFF\n"))
        broken, fixed = load_mesh(broken_dir / name), load_mesh(fixed_dir / name)
        header = (broken_dir / name).read_text().split("\n", 1)[0]
        n_vertices, n_faces = (int(x) for x in header[3:].split()[:2])
        assert broken.vertices.shape == (n_vertices, 3) and broken.faces.shape == (n_faces, 3)
        np.testing.assert_allclose(broken.vertices, fixed.vertices)
        np.testing.assert_array_equal(broken.faces, fixed.faces)


def test_genuine_modelnet_and_shapenet_meshes_load_and_sample(fixtures):
    paths = (sorted((fixtures / "modelnet_off").rglob("*.off"))
             + sorted((fixtures / "shapenetcore_v1").rglob("model.obj")))
    assert len(paths) >= 10
    for path in paths:
        mesh = load_mesh(path)
        points, normals = sample_surface(mesh, 1024, seed=0)
        radius = np.linalg.norm(points, axis=1)
        assert radius.max() <= 1.0 + 1e-5 and radius.max() > 0.5, path
        np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-4)
