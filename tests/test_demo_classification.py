"""Tests of the held-out ModelNet40 / ScanObjectNN stand-ins (picat.demo.classification, scanner, visibility)."""

from __future__ import annotations

import numpy as np
import pytest
import trimesh
from scipy.spatial import cKDTree

from picat.demo import scanner
from picat.demo.classification import StandinSet, clean_objects, object_key, object_seed, scan_objects, scan_variants
from picat.demo.part_mesh import CATEGORIES
from picat.demo.recipes import demo_objects, generate_shape
from picat.demo.scanner import BG_SHARE_RANGE, SCAN_VARIANTS
from picat.demo.seeding import SPLITS
from picat.demo.visibility import hidden_point_removal

PER_CATEGORY = 2
N_POINTS = 256
SEED = 7
# Depth noise is 0.003 object radii and the pb jitter 0.005 box half-diagonals, both about
# that in normalised units: a point "on" a surface is within a few of those.
ON_SURFACE = 0.03


@pytest.fixture(scope="module")
def clean() -> StandinSet:
    return clean_objects(PER_CATEGORY, N_POINTS, SEED, "train")


@pytest.fixture(scope="module")
def scans() -> dict[str, StandinSet]:
    return scan_variants(SCAN_VARIANTS, PER_CATEGORY, N_POINTS, SEED, "train")


def object_mesh(dataset: StandinSet, i: int) -> trimesh.Trimesh:
    """Object i's mesh moved into its cloud's frame with the recorded transform."""
    mesh = generate_shape(dataset.class_names[dataset.labels[i]], int(dataset.shape_seeds[i])).to_trimesh()
    mesh.apply_transform(dataset.transforms[i])
    return mesh


def distance_to_mesh(points: np.ndarray, mesh: trimesh.Trimesh) -> np.ndarray:
    """(P,) exact distance of each point to the mesh surface (brute force over all faces;
    trimesh.proximity would need rtree, which is not a dependency)."""
    triangles = mesh.triangles
    out = np.empty(len(points))
    for start in range(0, len(points), 32):
        chunk = points[start : start + 32].astype(np.float64)
        pairs_t = np.tile(triangles, (len(chunk), 1, 1))
        pairs_p = np.repeat(chunk, len(triangles), axis=0)
        closest = trimesh.triangles.closest_point(pairs_t, pairs_p)
        out[start : start + 32] = np.linalg.norm(closest - pairs_p, axis=1).reshape(len(chunk), -1).min(axis=1)
    return out


def nearest_faces(points: np.ndarray, mesh: trimesh.Trimesh) -> np.ndarray:
    """(P,) index of the face nearest to each point (brute force, as distance_to_mesh)."""
    triangles = mesh.triangles
    pairs_t = np.tile(triangles, (len(points), 1, 1))
    pairs_p = np.repeat(points.astype(np.float64), len(triangles), axis=0)
    distance = np.linalg.norm(trimesh.triangles.closest_point(pairs_t, pairs_p) - pairs_p, axis=1)
    return distance.reshape(len(points), -1).argmin(axis=1)


def coverage(cloud: np.ndarray, mesh: trimesh.Trimesh, radius: float) -> float:
    """Fraction of a complete surface sample of ``mesh`` that has a cloud point within
    ``radius`` on its own side of the surface (so the two faces of a thin board count apart)."""
    complete, faces = trimesh.sample.sample_surface(mesh, 2000, seed=0)
    normals = mesh.face_normals[faces]
    tree = cKDTree(cloud)
    covered = [
        len(near) > 0 and ((cloud[near] - p) @ n >= -0.1 * radius).any()
        for p, n, near in zip(complete, normals, tree.query_ball_point(complete, radius), strict=True)
    ]
    return float(np.mean(covered))


def all_sets(clean: StandinSet, scans: dict[str, StandinSet]) -> dict[str, StandinSet]:
    return {"clean": clean, **scans}


# ---------------------------------------------------------------------------------------
# Shared contract


def test_shapes_dtypes_and_balanced_labels(clean, scans):
    n = len(CATEGORIES) * PER_CATEGORY
    for name, dataset in all_sets(clean, scans).items():
        assert dataset.points.shape == (n, N_POINTS, 3) and dataset.points.dtype == np.float32, name
        assert dataset.labels.dtype == np.int64 and dataset.class_names == CATEGORIES, name
        np.testing.assert_array_equal(np.bincount(dataset.labels, minlength=len(CATEGORIES)), PER_CATEGORY)
        assert dataset.shape_seeds.shape == (n,) and dataset.shape_seeds.dtype == np.int64, name
        assert dataset.transforms.shape == (n, 4, 4), name
        if name == "clean":
            assert dataset.masks is None
        else:
            assert dataset.masks.shape == (n, N_POINTS) and dataset.masks.dtype == np.int8, name
            assert set(np.unique(dataset.masks)) <= {0, 1}, name
    assert (scans["obj_only"].masks == 1).all()
    # Every variant and the clean set describe the same objects.
    for dataset in scans.values():
        np.testing.assert_array_equal(dataset.shape_seeds, clean.shape_seeds)


def test_every_cloud_is_normalised_into_the_unit_sphere(clean, scans):
    for name, dataset in all_sets(clean, scans).items():
        points = dataset.points.astype(np.float64)
        np.testing.assert_allclose(np.linalg.norm(points, axis=2).max(axis=1), 1.0, atol=1e-5, err_msg=name)
        centres = (points.min(axis=1) + points.max(axis=1)) / 2
        np.testing.assert_allclose(centres, 0.0, atol=1e-5, err_msg=name)


def test_same_arguments_give_identical_arrays(clean, scans):
    again = clean_objects(PER_CATEGORY, N_POINTS, SEED, "train")
    assert again.points.tobytes() == clean.points.tobytes()
    np.testing.assert_array_equal(again.shape_seeds, clean.shape_seeds)
    # A single variant asked for alone, with a subset of the categories, equals the rows
    # of the same objects in the full set made together with the other variants.
    subset = ("mug", "chair")
    rows = np.concatenate([np.flatnonzero(scans["pb_t50_rs"].labels == CATEGORIES.index(c)) for c in subset])
    for variant in ("pb_t50_rs", "obj_bg"):
        alone = scan_objects(variant, PER_CATEGORY, N_POINTS, SEED, "train", categories=subset)
        assert alone.class_names == subset
        np.testing.assert_array_equal(alone.labels, np.repeat([0, 1], PER_CATEGORY))
        assert alone.points.tobytes() == scans[variant].points[rows].tobytes()
        assert alone.masks.tobytes() == scans[variant].masks[rows].tobytes()
    twice = scan_objects("obj_only", 1, 64, 3, "test", categories=("lamp",))
    assert twice.points.tobytes() == scan_objects("obj_only", 1, 64, 3, "test", categories=("lamp",)).points.tobytes()


def test_object_i_does_not_depend_on_how_many_are_asked_for(clean):
    one = clean_objects(1, N_POINTS, SEED, "train", categories=("bed",))
    row = clean.labels.tolist().index(CATEGORIES.index("bed"))
    assert one.shape_seeds[0] == clean.shape_seeds[row]
    assert one.points.tobytes() == clean.points[row].tobytes()


def test_different_seeds_give_different_objects(clean, scans):
    other = clean_objects(PER_CATEGORY, N_POINTS, SEED + 1, "train")
    assert not set(other.shape_seeds.tolist()) & set(clean.shape_seeds.tolist())
    assert not np.allclose(other.points, clean.points)
    other_scan = scan_objects("obj_bg", 1, N_POINTS, SEED + 1, "train", categories=("table",))
    row = scans["obj_bg"].labels.tolist().index(CATEGORIES.index("table"))
    assert other_scan.shape_seeds[0] != scans["obj_bg"].shape_seeds[row]
    assert not np.allclose(other_scan.points[0], scans["obj_bg"].points[row])


def test_held_out_seeds_never_meet_the_corpus_nor_the_other_split(clean):
    corpus = {seed for _, _, seed in demo_objects(2000, SEED)}
    assert max(corpus) < 2**32
    assert ((clean.shape_seeds >= 2**32) & (clean.shape_seeds < 2**33)).all()
    assert not corpus & set(clean.shape_seeds.tolist())
    test = clean_objects(PER_CATEGORY, N_POINTS, SEED, "test")
    assert not set(test.shape_seeds.tolist()) & set(clean.shape_seeds.tolist())
    # The construction itself, at a scale no demo uses (no shapes generated): the split
    # sits in bits 30-31, so train and test seeds cannot coincide for any seed.
    for seed in (0, SEED):
        by_split = {}
        for split in SPLITS:
            split_index = SPLITS.index(split)
            seeds = np.array([object_seed(seed, object_key(split_index, c, i))
                              for c in CATEGORIES for i in range(300)])
            assert ((seeds >= 2**32) & (seeds < 2**33)).all()
            assert ((seeds - 2**32) >> 30 == split_index).all()
            by_split[split] = set(seeds.tolist())
        assert not by_split["train"] & by_split["test"] and not by_split["train"] & by_split["val"]
        assert not by_split["test"] & by_split["val"]


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="variant"):
        scan_objects("obj_bg_t25", 1, 16, 0, "train")
    with pytest.raises(ValueError, match="split"):
        clean_objects(1, 16, 0, "validation")
    with pytest.raises(ValueError, match="categories"):
        clean_objects(1, 16, 0, "train", categories=("chair", "toilet"))
    with pytest.raises(ValueError, match="n_points"):
        scan_objects("obj_only", 1, 0, 0, "train")


# ---------------------------------------------------------------------------------------
# ModelNet40 stand-in


def test_clean_points_lie_on_the_whole_normalised_mesh(clean):
    covered = []
    for i in range(0, len(clean.labels), 2):
        mesh = object_mesh(clean, i)
        distance = distance_to_mesh(clean.points[i, :64], mesh)
        assert distance.max() < 1e-5, clean.class_names[clean.labels[i]]
        # Canonical pose: the transform is a scale and a shift, no rotation.
        linear = clean.transforms[i, :3, :3]
        np.testing.assert_allclose(linear, np.eye(3) * linear[0, 0], atol=1e-12)
        covered.append(coverage(clean.points[i], mesh, 0.15))
    # Complete: both sides of every part have samples nearby (as far as 256 points go).
    assert min(covered) > 0.7 and np.mean(covered) > 0.85


def test_clean_normals_are_the_normals_of_the_faces_the_points_lie_on(clean, scans):
    assert clean.normals.shape == clean.points.shape and clean.normals.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(clean.normals, axis=2), 1.0, atol=1e-5)
    for i in range(0, len(clean.labels), 3):
        mesh = object_mesh(clean, i)
        faces = nearest_faces(clean.points[i, :32], mesh)
        # Parts may overlap (coplanar faces of two parts), so compare |cos|, not the sign.
        cosine = np.abs(np.einsum("ij,ij->i", mesh.face_normals[faces], clean.normals[i, :32]))
        assert np.median(cosine) > 0.999 and (cosine > 0.9).mean() > 0.9, clean.class_names[clean.labels[i]]
    assert all(scan.normals is None for scan in scans.values())


# ---------------------------------------------------------------------------------------
# ScanObjectNN stand-ins


def test_obj_only_is_a_partial_scan_of_the_object(clean, scans):
    obj_only = scans["obj_only"]
    partial, complete = [], []
    for i in range(len(obj_only.labels)):
        mesh = object_mesh(obj_only, i)
        if i % 3 == 0:
            assert distance_to_mesh(obj_only.points[i, :64], mesh).max() < ON_SURFACE
        # Compare in one frame (the clean set's): same object, same number of points.
        to_clean = clean.transforms[i] @ np.linalg.inv(obj_only.transforms[i])
        scan = obj_only.points[i].astype(np.float64) @ to_clean[:3, :3].T + to_clean[:3, 3]
        clean_mesh = object_mesh(clean, i)
        partial.append(coverage(scan, clean_mesh, 0.12))
        complete.append(coverage(clean.points[i], clean_mesh, 0.12))
    partial, complete = np.array(partial), np.array(complete)
    # The scan sees one side: clearly less of every object than a complete sample does.
    assert partial.max() < 0.8 and partial.mean() < 0.6, partial
    assert complete.mean() > 0.8 and (complete - partial).min() > 0.1


def test_hidden_point_removal_keeps_only_the_side_facing_the_camera():
    cube = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    points, _ = trimesh.sample.sample_surface(cube, 6000, seed=1)
    for camera in ([0.0, 0.0, 3.0], [0.0, 1.5, 3.0]):
        visible = hidden_point_removal(points, np.array(camera))
        back = (points[:, 2] < -0.499) & (np.abs(points[:, :2]) < 0.45).all(axis=1)
        front = points[:, 2] > 0.499
        assert not (visible & back).any(), camera
        assert visible[front].mean() > 0.95, camera


def cube_scene(camera: list[float]) -> scanner.Scene:
    """A unit cube standing on the floor, nothing else, scanned from ``camera``."""
    cube = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    cube.apply_translation([0.0, 0.5, 0.0])
    box = scanner.CropBox(np.array([0.0, 0.5, 0.0]), np.array([0.7, 0.6, 0.7]))
    return scanner.Scene(cube, (), None, np.array(camera), float(np.sqrt(3) / 2), box, box)


def test_scan_of_a_cube_on_the_floor_sees_its_front_and_top_and_not_what_it_hides():
    scene = cube_scene([0.0, 1.5, 4.0])
    scan = scanner.scan_scene(scene, 4000, np.random.default_rng(0))  # ~20000 samples on the cube
    cube, floor = scan.points[scan.is_object], scan.points[~scan.is_object]
    assert len(cube) > 3000 and len(floor) > 500
    # No points on the -Z face (away from the camera), nor on the bottom.
    assert not ((cube[:, 2] < -0.47) & (np.abs(cube[:, 0]) < 0.45) & (cube[:, 1] < 0.95)).any()
    assert not ((cube[:, 1] < 0.02) & (np.abs(cube[:, 0]) < 0.45) & (np.abs(cube[:, 2]) < 0.45)).any()
    # Front (+Z) and top are seen.
    assert (cube[:, 2] > 0.47).sum() > 1000 and (cube[:, 1] > 0.97).sum() > 500
    # The floor behind the cube is in its shadow, the floor in front is seen.
    assert not ((floor[:, 2] < -0.53) & (np.abs(floor[:, 0]) < 0.4)).any()
    assert (floor[:, 2] > 0.53).sum() > 100
    np.testing.assert_allclose(floor[:, 1], 0.0, atol=0.05)


def test_obj_bg_background_share_and_mask(scans):
    obj_bg = scans["obj_bg"]
    share = 1.0 - obj_bg.masks.mean(axis=1)
    low, high = BG_SHARE_RANGE
    assert ((share >= low) & (share <= high)).all(), share
    inside, outside = [], []
    for i in range(len(obj_bg.labels)):
        mesh = object_mesh(obj_bg, i)
        mask = obj_bg.masks[i].astype(bool)
        inside.append(distance_to_mesh(obj_bg.points[i][mask][:48], mesh))
        outside.append(distance_to_mesh(obj_bg.points[i][~mask][:48], mesh))
    inside, outside = np.concatenate(inside), np.concatenate(outside)
    # Object points lie on the object; background points (floor, wall, neighbours)
    # mostly well away from it (some floor points touch its feet).
    assert inside.max() < ON_SURFACE
    assert (outside > ON_SURFACE).mean() > 0.85 and np.median(outside) > 3 * ON_SURFACE


def test_pb_t50_rs_is_obj_bg_turned_about_y_and_shifted(scans):
    obj_bg, pb = scans["obj_bg"], scans["pb_t50_rs"]
    yaws = []
    for i in range(len(pb.labels)):
        linear = pb.transforms[i, :3, :3]
        scale = np.linalg.norm(linear[:, 1])
        # Y stays up: the object's up axis maps to +Y, and Y to Y.
        np.testing.assert_allclose(linear[:, 1], [0.0, scale, 0.0], atol=1e-9)
        np.testing.assert_allclose(linear[1], [0.0, scale, 0.0], atol=1e-9)
        np.testing.assert_allclose(linear.T @ linear, np.eye(3) * scale**2, atol=1e-9)
        yaws.append(np.arctan2(linear[0, 2], linear[0, 0]))
        # obj_bg keeps the object's own horizontal orientation.
        bg_linear = obj_bg.transforms[i, :3, :3]
        np.testing.assert_allclose(bg_linear, np.eye(3) * bg_linear[0, 0], atol=1e-12)
    yaws = np.array(yaws)
    assert np.abs(yaws).max() > 1.0 and np.std(yaws) > 0.8  # turned, by various angles
    # The crop moved: the box centre (the cloud frame's origin before normalising) is
    # not where obj_bg's is.
    shift = np.linalg.norm(pb.transforms[:, :3, 3] - obj_bg.transforms[:, :3, 3], axis=1)
    assert (shift > 0.05).mean() > 0.8
    # The points really are the turned object: object points on the transformed mesh.
    for i in range(0, len(pb.labels), 2):
        mask = pb.masks[i].astype(bool)
        assert mask.sum() > 0.1 * N_POINTS
        assert distance_to_mesh(pb.points[i][mask][:48], object_mesh(pb, i)).max() < ON_SURFACE
    # More background than obj_bg on average (the crop slid off the object).
    assert (1 - pb.masks.mean()) > (1 - obj_bg.masks.mean())


# ---------------------------------------------------------------------------------------
# Yaw: objects turned about the up axis (stand-ins with headroom, issue 12)


def _yaw_of(transform: np.ndarray) -> float:
    """The angle about +Y of a similarity's rotation (x' = c x + s z)."""
    linear = transform[:3, :3] / np.linalg.norm(transform[:3, 0])
    np.testing.assert_allclose(linear[1], [0.0, 1.0, 0.0], atol=1e-9)  # a turn about the up axis only
    return float(np.arctan2(linear[0, 2], linear[0, 0]))


def test_random_yaw_turns_each_clean_object_by_its_own_angle_and_keeps_the_points(clean):
    turned = clean_objects(PER_CATEGORY, N_POINTS, SEED, "train", yaw="random")
    np.testing.assert_array_equal(turned.shape_seeds, clean.shape_seeds)
    np.testing.assert_array_equal(turned.labels, clean.labels)
    angles = np.array([_yaw_of(t) for t in turned.transforms])
    assert len(np.unique(np.round(angles, 6))) == len(angles)  # one angle per object
    assert np.abs(angles).max() > 1.0  # genuinely turned, not a tiny wobble
    for i in range(0, len(clean.labels), 5):
        # The recorded transform still takes the generator's mesh onto the turned cloud.
        assert distance_to_mesh(turned.points[i, :32], object_mesh(turned, i)).max() < 1e-5
        # Same surface samples: turning and renormalising the canonical cloud gives the turned one.
        relative = turned.transforms[i] @ np.linalg.inv(clean.transforms[i])
        expected = clean.points[i].astype(np.float64) @ relative[:3, :3].T + relative[:3, 3]
        np.testing.assert_allclose(turned.points[i], expected, atol=1e-5)
        np.testing.assert_allclose(turned.normals[i], clean.normals[i] @ (relative[:3, :3] / np.linalg.norm(
            relative[:3, 0])).T, atol=1e-5)
    lo, hi = turned.points.min(axis=1), turned.points.max(axis=1)
    np.testing.assert_allclose((lo + hi) / 2, 0.0, atol=1e-5)  # still normalised
    np.testing.assert_allclose(np.linalg.norm(turned.points, axis=2).max(axis=1), 1.0, atol=1e-5)
    again = clean_objects(PER_CATEGORY, N_POINTS, SEED, "train", yaw="random")
    np.testing.assert_array_equal(again.points, turned.points)


def test_random_yaw_turns_obj_only_and_obj_bg_by_one_angle_and_leaves_pb_t50_rs(scans):
    turned = scan_variants(SCAN_VARIANTS, PER_CATEGORY, N_POINTS, SEED, "train", yaw="random")
    np.testing.assert_array_equal(turned["pb_t50_rs"].points, scans["pb_t50_rs"].points)
    for variant in ("obj_only", "obj_bg"):
        np.testing.assert_array_equal(turned[variant].masks, scans[variant].masks)
        for i in range(len(scans[variant].labels)):
            relative = turned[variant].transforms[i] @ np.linalg.inv(scans[variant].transforms[i])
            expected = scans[variant].points[i].astype(np.float64) @ relative[:3, :3].T + relative[:3, 3]
            np.testing.assert_allclose(turned[variant].points[i], expected, atol=1e-5)
    angles = {v: np.array([_yaw_of(t) - _yaw_of(s) for t, s in zip(turned[v].transforms, scans[v].transforms,
                                                                     strict=True)])
              for v in ("obj_only", "obj_bg")}
    np.testing.assert_allclose(np.cos(angles["obj_only"]), np.cos(angles["obj_bg"]), atol=1e-9)
    assert np.abs(np.sin(angles["obj_bg"])).max() > 0.5


def test_unknown_yaw_is_rejected_by_name():
    with pytest.raises(ValueError, match="yaw must be one of"):
        clean_objects(1, 16, 0, "train", categories=("table",), yaw="sideways")
