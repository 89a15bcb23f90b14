"""Tests of the synthetic, part-labelled mesh generator (picat.demo: part_mesh, primitives, recipes, mesh_files)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import trimesh

from picat.demo.mesh_files import labels_path, load_part_labels, save_part_mesh
from picat.demo.part_mesh import CATEGORIES, OPTIONAL_PARTS, PART_NAMES, PartMesh
from picat.demo.recipes import demo_objects, generate_shape

N_SEEDS = 20


@pytest.fixture(scope="module")
def shapes() -> dict[str, list[PartMesh]]:
    """Seeds 0..N_SEEDS-1 of every category, generated once for the whole module."""
    return {category: [generate_shape(category, seed) for seed in range(N_SEEDS)] for category in CATEGORIES}


def face_areas(mesh: PartMesh) -> np.ndarray:
    tri = mesh.vertices[mesh.faces]
    return np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2


def part_centroid(mesh: PartMesh, part: str) -> np.ndarray:
    """(3,) mean of the vertices used by the faces of ``part``."""
    label = mesh.part_names.index(part)
    return mesh.vertices[np.unique(mesh.faces[mesh.face_labels == label])].mean(axis=0)


def test_categories_and_part_names() -> None:
    expected = ("table", "chair", "lamp", "mug", "airplane", "bottle", "car", "shelf", "bed", "sofa")
    assert CATEGORIES[: len(expected)] == expected
    assert len(set(CATEGORIES)) == len(CATEGORIES)
    assert set(PART_NAMES) >= set(CATEGORIES)  # and the extra categories (test_demo_extra_categories.py)
    for category, names in PART_NAMES.items():
        assert len(names) >= 2 and len(set(names)) == len(names), category
    assert PART_NAMES["chair"] == ("seat", "back", "leg", "arm")
    assert PART_NAMES["airplane"] == ("fuselage", "wing", "tail", "engine")
    for category, optional in OPTIONAL_PARTS.items():
        assert set(optional) < set(PART_NAMES[category])


@pytest.mark.parametrize("category", CATEGORIES)
def test_default_seed_is_a_valid_mesh(category: str) -> None:
    mesh = generate_shape(category, 0)
    assert mesh.category == category and mesh.part_names == PART_NAMES[category]
    assert mesh.vertices.dtype == np.float64 and mesh.vertices.shape[1] == 3
    assert mesh.faces.dtype == np.int64 and mesh.faces.shape[1] == 3
    assert mesh.face_labels.dtype == np.int64 and mesh.face_labels.shape == (mesh.n_faces,)
    assert np.isfinite(mesh.vertices).all()
    assert mesh.faces.min() >= 0 and mesh.faces.max() < len(mesh.vertices)
    assert mesh.face_labels.min() >= 0 and mesh.face_labels.max() < len(mesh.part_names)
    present = {mesh.part_names[i] for i in np.unique(mesh.face_labels)}
    assert set(PART_NAMES[category]) - set(OPTIONAL_PARTS.get(category, ())) <= present
    # No degenerate faces, relative to the object's size.
    scale = np.ptp(mesh.vertices, axis=0).max()
    assert face_areas(mesh).min() > 1e-9 * scale**2
    # Every primitive is a closed surface with outward faces: each connected component
    # is watertight, consistently wound, and encloses a positive volume.
    components = mesh.to_trimesh().split(only_watertight=False)
    assert len(components) >= 2
    for component in components:
        assert component.is_watertight and component.is_winding_consistent
        assert component.volume > 0


def test_every_seed_has_its_parts_and_a_sane_size(shapes: dict[str, list[PartMesh]]) -> None:
    for category, meshes in shapes.items():
        required = set(PART_NAMES[category]) - set(OPTIONAL_PARTS.get(category, ()))
        seen: set[str] = set()
        for seed, mesh in enumerate(meshes):
            present = {mesh.part_names[i] for i in np.unique(mesh.face_labels)}
            assert required <= present, (category, seed, required - present)
            seen |= present
            assert 100 <= mesh.n_faces <= 5000, (category, seed, mesh.n_faces)
            assert face_areas(mesh).min() > 0, (category, seed)
        # Optional parts do show up in some instances.
        assert seen == set(PART_NAMES[category]), (category, set(PART_NAMES[category]) - seen)


def test_same_seed_same_mesh_other_seed_other_mesh(shapes: dict[str, list[PartMesh]]) -> None:
    for category in CATEGORIES:
        again = generate_shape(category, 3)
        first = shapes[category][3]
        np.testing.assert_array_equal(again.vertices, first.vertices)
        np.testing.assert_array_equal(again.faces, first.faces)
        np.testing.assert_array_equal(again.face_labels, first.face_labels)
        other = shapes[category][4]
        assert other.vertices.shape != first.vertices.shape or not np.allclose(other.vertices, first.vertices)
        # Proportions vary from instance to instance (not just a rigid shift).
        extents = np.array([np.ptp(m.vertices, axis=0) for m in shapes[category]])
        assert (extents.std(axis=0) / extents.mean(axis=0)).max() > 0.03, category


def test_y_up_on_the_floor_front_towards_plus_z(shapes: dict[str, list[PartMesh]]) -> None:
    for category, meshes in shapes.items():
        for mesh in meshes:
            low, high = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
            assert low[1] == pytest.approx(0.0, abs=1e-9)  # stands on y = 0
            np.testing.assert_allclose((low + high)[[0, 2]] / 2, 0.0, atol=1e-9)  # footprint centred
            height, horizontal = high[1] - low[1], max(high[0] - low[0], high[2] - low[2])
            assert 0.05 * horizontal < height < 20 * horizontal, category
            if category in ("bottle", "guitar", "chair"):
                assert height > horizontal, category
            if category in ("airplane", "car", "bed", "sofa", "bench"):
                assert height < horizontal, category
    for mesh in shapes["car"] + shapes["airplane"]:
        extent = np.ptp(mesh.vertices, axis=0)
        assert extent[2] > extent[0] or mesh.category == "airplane"  # cars are long along Z
        nose = mesh.face_labels[np.any(mesh.faces == np.argmax(mesh.vertices[:, 2]), axis=1)]
        assert mesh.category == "car" or mesh.part_names[nose[0]] == "fuselage"  # nose at +Z
    pairs = (("chair", "back", "seat"), ("bed", "headboard", "mattress"), ("sofa", "back", "cushion"))
    for category, back, front in pairs:
        for mesh in shapes[category]:
            assert part_centroid(mesh, back)[2] < part_centroid(mesh, front)[2], category
    # What touches the floor is what should.
    for category, part in (("table", "leg"), ("chair", "leg"), ("car", "wheel"), ("lamp", "base"), ("monitor", "base")):
        for mesh in shapes[category]:
            on_floor = np.any(mesh.vertices[mesh.faces][:, :, 1] < 1e-9, axis=1)
            assert {mesh.part_names[i] for i in np.unique(mesh.face_labels[on_floor])} == {part}, category


def test_part_mesh_is_read_only_and_validated() -> None:
    mesh = generate_shape("mug", 1)
    with pytest.raises(ValueError):
        mesh.vertices[0, 0] = 1.0
    with pytest.raises(ValueError, match="face_labels"):
        PartMesh(mesh.vertices, mesh.faces, np.full(mesh.n_faces, 5), "mug")
    with pytest.raises(ValueError, match="'spaceship'"):
        PartMesh(mesh.vertices, mesh.faces, mesh.face_labels, "spaceship")


def test_round_trip_through_obj(tmp_path: Path) -> None:
    for category in ("chair", "airplane", "mug"):
        mesh = generate_shape(category, 5)
        path = tmp_path / category / f"{category}_0005.obj"
        save_part_mesh(mesh, path)
        assert labels_path(path) == tmp_path / category / f"{category}_0005.labels.npy"
        assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, labels_path(path).name])
        loaded = trimesh.load(path, process=False)
        assert isinstance(loaded, trimesh.Trimesh)
        assert loaded.vertices.shape == mesh.vertices.shape
        assert loaded.faces.shape == mesh.faces.shape
        np.testing.assert_array_equal(loaded.faces, mesh.faces)
        np.testing.assert_allclose(loaded.vertices, mesh.vertices, rtol=1e-7, atol=1e-7 * np.abs(mesh.vertices).max())
        labels = load_part_labels(path)
        assert labels.dtype == np.int64
        np.testing.assert_array_equal(labels, mesh.face_labels)
    # Overwriting replaces both files.
    other = generate_shape("mug", 6)
    save_part_mesh(other, tmp_path / "mug" / "mug_0005.obj")
    np.testing.assert_array_equal(load_part_labels(tmp_path / "mug" / "mug_0005.obj"), other.face_labels)


def test_load_part_labels_errors(tmp_path: Path) -> None:
    mesh = generate_shape("table", 2)
    path = tmp_path / "table_0002.obj"
    save_part_mesh(mesh, path)
    np.save(labels_path(path), mesh.face_labels[:-1])
    with pytest.raises(ValueError, match=f"{mesh.n_faces - 1} labels but .* {mesh.n_faces} faces"):
        load_part_labels(path)
    labels_path(path).unlink()
    with pytest.raises(FileNotFoundError, match="table_0002.labels.npy"):
        load_part_labels(path)


def test_demo_objects_listing() -> None:
    listing = demo_objects(60, seed=7)
    assert len(listing) == 60
    assert demo_objects(1000, seed=7)[:60] == listing  # prefix-stable
    assert demo_objects(60, seed=7) == listing  # reproducible
    assert demo_objects(0, seed=7) == []
    ids = [object_id for object_id, _, _ in listing]
    assert len(set(ids)) == len(ids)
    for object_id, category, shape_seed in listing:
        assert re.fullmatch(rf"{category}_\d{{4}}", object_id)
        assert isinstance(shape_seed, int) and shape_seed >= 0
    assert [category for _, category, _ in listing[: len(CATEGORIES)]] == list(CATEGORIES)  # round-robin
    counts = Counter(category for _, category, _ in listing)
    assert set(counts) == set(CATEGORIES) and max(counts.values()) - min(counts.values()) <= 1
    assert listing[len(CATEGORIES)][0] == f"{CATEGORIES[0]}_0001"
    seeds = [shape_seed for _, _, shape_seed in listing]
    assert len(set(seeds)) == len(seeds)
    assert [s for _, _, s in demo_objects(60, seed=8)] != seeds
    subset = demo_objects(4, seed=7, categories=("mug", "car"))
    assert [object_id for object_id, _, _ in subset] == ["mug_0000", "car_0000", "mug_0001", "car_0001"]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match=r"'spaceship'.*table, chair, lamp.*stool"):
        generate_shape("spaceship", 0)
    with pytest.raises(ValueError, match="-1"):
        generate_shape("chair", -1)
    with pytest.raises(ValueError, match="'spaceship'"):
        demo_objects(3, 0, categories=("chair", "spaceship"))
    with pytest.raises(ValueError, match="-2"):
        demo_objects(-2, 0)
