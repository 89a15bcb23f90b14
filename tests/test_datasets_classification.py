"""Classification dataset readers and writers (picat.datasets): genuine layouts written by
hand with h5py / plain text, writer round trips, every error case, and the genuine samples."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from picat.datasets import (
    SCANOBJECTNN_CLASSES,
    VARIANT_FILES,
    DatasetError,
    PointCloudSet,
    read_classification,
    read_modelnet40_h5,
    read_modelnet40_off,
    read_modelnet40_resampled,
    read_scanobjectnn,
    write_modelnet40_h5,
    write_scanobjectnn,
)
from picat.meshes import load_mesh

NAMES40 = [f"class{i:02d}" for i in range(40)]
CUBE_OFF = ("OFF\n8 12 0\n0 0 0\n2 0 0\n2 2 0\n0 2 0\n0 0 2\n2 0 2\n2 2 2\n0 2 2\n"
            "3 0 2 1\n3 0 3 2\n3 4 5 6\n3 4 6 7\n3 0 1 5\n3 0 5 4\n"
            "3 1 2 6\n3 1 6 5\n3 2 3 7\n3 2 7 6\n3 3 0 4\n3 3 4 7\n")
# ModelNet's broken header: the counts on the OFF line.
CUBE_OFF_BROKEN = CUBE_OFF.replace("OFF\n8 12 0", "OFF8 12 0", 1)


def write_h5(path: Path, **arrays: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        for key, value in arrays.items():
            handle.create_dataset(key, data=value)
    return path


def random_points(n: int, n_points: int = 16, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, n_points, channels)).astype(np.float32)


def no_temporary_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".tmp-" in p.name]


# --------------------------------------------------------------------------- PointCloudSet


def test_point_cloud_set_validates_on_construction():
    points, labels = random_points(2), np.array([0, 1])
    ok = PointCloudSet(points, labels, ("a", "b"), "here", masks=np.ones((2, 16), dtype=bool))
    assert len(ok) == 2 and ok.n_classes == 2
    with pytest.raises(DatasetError, match="here: points must be a float32"):
        PointCloudSet(points.astype(np.float64), labels, ("a", "b"), "here")
    with pytest.raises(DatasetError, match=r"points must have shape .* got \(2, 16, 4\)"):
        PointCloudSet(random_points(2, channels=4), labels, ("a", "b"), "here")
    with pytest.raises(DatasetError, match=r"labels have shape \(3,\), expected \(2,\)"):
        PointCloudSet(points, np.array([0, 1, 1]), ("a", "b"), "here")
    with pytest.raises(DatasetError, match="label 2 at index 1 is out of range for 2 classes"):
        PointCloudSet(points, np.array([0, 2]), ("a", "b"), "here")
    with pytest.raises(DatasetError, match=r"masks have shape \(2, 15\)"):
        PointCloudSet(points, labels, ("a", "b"), "here", masks=np.ones((2, 15), dtype=bool))
    with pytest.raises(DatasetError, match="not unique"):
        PointCloudSet(points, labels, ("a", "a"), "here")
    nan = points.copy()
    nan[1, 3, 0] = np.nan
    with pytest.raises(DatasetError, match="sample 1 contain non-finite"):
        PointCloudSet(nan, labels, ("a", "b"), "here")


# --------------------------------------------------------------------------- ModelNet40 HDF5


def genuine_h5_tree(root: Path, normals: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Two train files written with h5py as in the release (label (n, 1) uint8, a faceId key),
    listed out of numeric order to check that the list's order is used."""
    root.mkdir(parents=True)
    (root / "shape_names.txt").write_text("\n".join(NAMES40) + "\n")
    first, second = random_points(3, seed=1), random_points(2, seed=2)
    for name, data, label in (("ply_data_train0.h5", first, [5, 0, 39]), ("ply_data_train1.h5", second, [7, 7])):
        extra = {"normal": -data} if normals else {}
        write_h5(root / name, data=data, label=np.array(label, dtype=np.uint8)[:, None],
                 faceId=np.zeros(data.shape[:2], dtype=np.int32), **extra)
    (root / "train_files.txt").write_text(
        "data/modelnet40_ply_hdf5_2048/ply_data_train1.h5\ndata/modelnet40_ply_hdf5_2048/ply_data_train0.h5\n")
    return np.concatenate([second, first]), np.array([7, 7, 5, 0, 39])


def test_modelnet40_h5_reads_the_genuine_layout_in_list_order(tmp_path):
    root = tmp_path / "modelnet40_ply_hdf5_2048"
    points, labels = genuine_h5_tree(root)
    dataset = read_modelnet40_h5(root, "train")
    assert dataset.points.dtype == np.float32 and dataset.points.shape == (5, 16, 3)
    assert dataset.labels.dtype == np.int64
    np.testing.assert_array_equal(dataset.points, points)
    np.testing.assert_array_equal(dataset.labels, labels)
    assert dataset.class_names == tuple(NAMES40)
    assert dataset.masks is None
    assert "ply_data_train1.h5" in dataset.source


def test_modelnet40_h5_normals_are_appended(tmp_path):
    root = tmp_path / "h5"
    points, _ = genuine_h5_tree(root, normals=True)
    dataset = read_modelnet40_h5(root, "train", normals=True)
    assert dataset.points.shape == (5, 16, 6)
    np.testing.assert_array_equal(dataset.points[..., :3], points)
    np.testing.assert_array_equal(dataset.points[..., 3:], -points)


def test_modelnet40_h5_without_list_globs_files_in_numeric_order(tmp_path):
    root = tmp_path / "h5"
    root.mkdir()
    (root / "shape_names.txt").write_text("\n".join(NAMES40))
    for number in (10, 2, 0):  # lexically 0, 10, 2; numerically 0, 2, 10
        write_h5(root / f"ply_data_test{number}.h5", data=random_points(1, seed=number),
                 label=np.array([[number]], dtype=np.uint8))
    write_h5(root / "ply_data_train0.h5", data=random_points(1), label=np.array([[1]], dtype=np.uint8))
    dataset = read_modelnet40_h5(root, "test")
    np.testing.assert_array_equal(dataset.labels, [0, 2, 10])


@pytest.mark.parametrize("channels", [3, 6])
def test_modelnet40_h5_writer_round_trip_in_the_genuine_layout(tmp_path, channels):
    root = tmp_path / "modelnet40_ply_hdf5_2048"
    points = random_points(5, channels=channels).astype(np.float64)
    labels = np.array([3, 0, 39, 39, 1])
    written = write_modelnet40_h5(root, "test", points, labels, NAMES40, per_file=2)
    assert [p.name for p in written] == ["ply_data_test0.h5", "ply_data_test1.h5", "ply_data_test2.h5"]
    assert (root / "test_files.txt").read_text().splitlines() == [
        f"data/modelnet40_ply_hdf5_2048/ply_data_test{i}.h5" for i in range(3)]
    assert (root / "shape_names.txt").read_text().splitlines() == NAMES40
    with h5py.File(written[0], "r") as handle:  # the release's keys and dtypes
        assert handle["data"].shape == (2, 16, 3) and handle["data"].dtype == np.float32
        assert handle["label"].shape == (2, 1) and handle["label"].dtype == np.uint8
        assert ("normal" in handle) == (channels == 6)
    assert no_temporary_files(root)
    dataset = read_modelnet40_h5(root, "test", normals=channels == 6)
    np.testing.assert_array_equal(dataset.points, points.astype(np.float32))
    np.testing.assert_array_equal(dataset.labels, labels)
    # A shorter rewrite leaves neither stale files nor stale list entries.
    write_modelnet40_h5(root, "test", points[:1], labels[:1], NAMES40, per_file=2)
    assert sorted(p.name for p in root.glob("ply_data_test*.h5")) == ["ply_data_test0.h5"]
    assert len(read_modelnet40_h5(root, "test")) == 1


def test_modelnet40_h5_writer_rejects_bad_input(tmp_path):
    with pytest.raises(DatasetError, match="label 40 at index 1 is out of range for 40 classes"):
        write_modelnet40_h5(tmp_path, "train", random_points(2), np.array([0, 40]), NAMES40)
    with pytest.raises(DatasetError, match="labels must be integers"):
        write_modelnet40_h5(tmp_path, "train", random_points(2), np.array([0.0, 1.0]), NAMES40)
    with pytest.raises(DatasetError, match="split must be 'train' or 'test'"):
        write_modelnet40_h5(tmp_path, "val", random_points(2), np.array([0, 1]), NAMES40)
    assert not list(tmp_path.iterdir())


def h5_case(root: Path, case: str) -> tuple[str, str]:
    """Break a genuine tree one way; return (the file to be named, the expected problem)."""
    genuine_h5_tree(root)
    file0, file1 = root / "ply_data_train0.h5", root / "ply_data_train1.h5"
    if case == "missing listed file":
        file0.unlink()
        return str(file0), r"listed in .*train_files.txt line 2 .* does not exist"
    if case == "missing key":
        write_h5(file0, data=random_points(3))
        return str(file0), r"HDF5 key 'label' is missing \(keys present: \['data'\]\)"
    if case == "truncated":
        file1.write_bytes(file1.read_bytes()[:1000])
        return str(file1), "not a readable HDF5 file|cannot be read"
    if case == "not hdf5":
        file1.write_text("this is not HDF5\n")
        return str(file1), "not a readable HDF5 file"
    if case == "label out of range":
        write_h5(file0, data=random_points(4), label=np.array([[1], [2], [3], [40]], dtype=np.uint8))
        return str(file0), r"HDF5 key 'label'.*label 40 at index 3 is out of range for 40 classes"
    if case == "length mismatch":
        write_h5(file0, data=random_points(5), label=np.zeros((4, 1), dtype=np.uint8))
        return str(file0), "'label' has 4 entries but 'data' has 5 samples"
    if case == "wrong data shape":
        write_h5(file0, data=random_points(3, channels=4), label=np.zeros((3, 1), dtype=np.uint8))
        return str(file0), r"HDF5 key 'data' has shape \(3, 16, 4\), expected \(n, N, 3\)"
    if case == "different N":
        write_h5(file0, data=random_points(3, n_points=8), label=np.zeros((3, 1), dtype=np.uint8))
        return str(file0), r"samples have shape \(8, 3\), but the split's first file has \(16, 3\)"
    if case == "missing class names":
        (root / "shape_names.txt").unlink()
        return str(root / "shape_names.txt"), "does not exist"
    if case == "missing normals":
        return str(file1), r"HDF5 key 'normal' is missing \(keys present: \['data', 'faceId', 'label'\]\)"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing listed file", "missing key", "truncated", "not hdf5",
                                  "label out of range", "length mismatch", "wrong data shape",
                                  "different N", "missing class names", "missing normals"])
def test_modelnet40_h5_errors_name_the_file_and_problem(tmp_path, case):
    root = tmp_path / "h5"
    path, problem = h5_case(root, case)
    with pytest.raises(DatasetError, match=problem) as error:
        read_modelnet40_h5(root, "train", normals=case == "missing normals")
    assert path in str(error.value)


def test_modelnet40_h5_missing_root_says_what_was_expected(tmp_path):
    with pytest.raises(DatasetError, match="modelnet40_ply_hdf5_2048.*PointNet authors") as error:
        read_modelnet40_h5(tmp_path / "nowhere", "train")
    assert str(tmp_path / "nowhere") in str(error.value)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "shape_names.txt").write_text("a\n")
    with pytest.raises(DatasetError, match="no train_files.txt and no ply_data_trainN.h5"):
        read_modelnet40_h5(tmp_path / "empty", "train")


# --------------------------------------------------------------------------- ModelNet40 resampled


def resampled_tree(root: Path) -> dict[str, np.ndarray]:
    """A hand-written resampled layout: 3 classes (one with an underscore), 4 shapes of 5 lines."""
    names = ["airplane", "night_stand", "car"]
    root.mkdir(parents=True)
    (root / "modelnet40_shape_names.txt").write_text("\n".join(names) + "\n")
    values = {}
    for index, shape_id in enumerate(["night_stand_0001", "airplane_0002", "car_0003", "airplane_0001"]):
        cloud = np.round(np.random.default_rng(index).normal(size=(5, 6)), 6)
        folder = root / shape_id.rsplit("_", 1)[0]
        folder.mkdir(exist_ok=True)
        (folder / f"{shape_id}.txt").write_text("".join(",".join(f"{v:.6f}" for v in row) + "\n" for row in cloud))
        values[shape_id] = cloud
    (root / "modelnet40_train.txt").write_text("night_stand_0001\nairplane_0002\nairplane_0001\n")
    (root / "modelnet40_test.txt").write_text("car_0003\n")
    return values


def test_modelnet40_resampled_reads_the_genuine_layout(tmp_path):
    root = tmp_path / "modelnet40_normal_resampled"
    values = resampled_tree(root)
    dataset = read_modelnet40_resampled(root, "train", n_points=4, normals=True)
    assert dataset.points.shape == (3, 4, 6) and dataset.points.dtype == np.float32
    assert dataset.class_names == ("airplane", "night_stand", "car")
    np.testing.assert_array_equal(dataset.labels, [1, 0, 0])
    for row, shape_id in enumerate(["night_stand_0001", "airplane_0002", "airplane_0001"]):
        np.testing.assert_array_equal(dataset.points[row], values[shape_id][:4].astype(np.float32))
    xyz = read_modelnet40_resampled(root, "test", n_points=5)
    assert xyz.points.shape == (1, 5, 3)
    np.testing.assert_array_equal(xyz.labels, [2])
    np.testing.assert_array_equal(xyz.points[0], values["car_0003"][:, :3].astype(np.float32))


# case -> (0-based line edited, its new text, the error expected)
LINE_EDITS = {
    "bad line": (2, "0.1,0.2,oops,0,0,1", "line 3: not a number"),
    "wrong columns": (1, "0.1,0.2,0.3", "line 2: expected 6 comma-separated values x,y,z,nx,ny,nz, got 3"),
    "blank line": (0, "", "line 1: expected 6"),
    "non-finite": (3, "nan,0,0,0,0,1", "line 4: non-finite"),
}


def resampled_case(root: Path, case: str) -> tuple[str, str]:
    resampled_tree(root)
    shape = root / "airplane" / "airplane_0002.txt"
    lines = shape.read_text().splitlines()
    if case in LINE_EDITS:
        index, text, message = LINE_EDITS[case]
        lines[index] = text
        shape.write_text("\n".join(lines) + "\n")
        return str(shape), message
    if case == "too few lines":
        shape.write_text("\n".join(lines[:3]) + "\n")
        return str(shape), "has only 3 lines, fewer than the n_points=4"
    if case == "missing file":
        shape.unlink()
        return str(shape), r"file of id 'airplane_0002' \(listed in .*modelnet40_train.txt line 2\) does not exist"
    if case == "unknown class":
        (root / "modelnet40_train.txt").write_text("airplane_0001\nboat_0001\n")
        return str(root / "modelnet40_train.txt"), "line 2: id 'boat_0001' does not start with a class"
    if case == "missing split list":
        (root / "modelnet40_train.txt").unlink()
        return str(root / "modelnet40_train.txt"), "split list file does not exist"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["bad line", "wrong columns", "blank line", "non-finite", "too few lines",
                                  "missing file", "unknown class", "missing split list"])
def test_modelnet40_resampled_errors_name_the_file_and_line(tmp_path, case):
    root = tmp_path / "resampled"
    path, problem = resampled_case(root, case)
    with pytest.raises(DatasetError, match=problem) as error:
        read_modelnet40_resampled(root, "train", n_points=4)
    assert path in str(error.value)


def test_modelnet40_resampled_missing_root_and_bad_n_points(tmp_path):
    with pytest.raises(DatasetError, match="modelnet40_normal_resampled.*PointNet\\+\\+"):
        read_modelnet40_resampled(tmp_path / "nowhere", "train", 1024)
    resampled_tree(tmp_path / "r")
    with pytest.raises(DatasetError, match="n_points must be a positive integer, got 0"):
        read_modelnet40_resampled(tmp_path / "r", "train", 0)


@pytest.fixture
def genuine_resampled(fixtures, tmp_path) -> Path:
    """The genuine resampled samples, symlinked into a tmp tree that gets the split lists
    (car_0250 is test, the rest train) without touching the fixtures folder."""
    source = fixtures / "modelnet40_normal_resampled"
    if not source.is_dir():
        pytest.skip(f"{source} not found in the genuine samples")
    root = tmp_path / "modelnet40_normal_resampled"
    root.mkdir()
    for entry in source.iterdir():
        (root / entry.name).symlink_to(entry.resolve())
    ids = sorted(p.stem for p in source.glob("*/*.txt"))
    (root / "modelnet40_train.txt").write_text("".join(f"{i}\n" for i in ids if i != "car_0250"))
    (root / "modelnet40_test.txt").write_text("car_0250\n")
    return root


def test_modelnet40_resampled_on_the_genuine_samples(genuine_resampled):
    root = genuine_resampled
    names = (root / "modelnet40_shape_names.txt").read_text().split()
    test = read_modelnet40_resampled(root, "test", n_points=1024, normals=True)
    assert test.points.shape == (1, 1024, 6) and len(test.class_names) == 40
    assert test.class_names[int(test.labels[0])] == "car" == names[7]
    reference = np.loadtxt(root / "car" / "car_0250.txt", delimiter=",")
    np.testing.assert_array_equal(test.points[0], reference[:1024].astype(np.float32))
    np.testing.assert_array_equal(test.points[0, 0], np.float32([-0.054090, -0.112600, -0.930700,
                                                                  -0.005551, -0.991700, -0.128400]))
    train = read_modelnet40_resampled(root, "train", n_points=10000)
    assert train.points.shape == (10, 10000, 3)
    listed = (root / "modelnet40_train.txt").read_text().split()
    assert [train.class_names[label] for label in train.labels] == [i.rsplit("_", 1)[0] for i in listed]
    with pytest.raises(DatasetError, match="car_0250.txt: has only 10000 lines, fewer than the n_points=10001"):
        read_modelnet40_resampled(root, "test", n_points=10001)


# --------------------------------------------------------------------------- ModelNet40 OFF


def off_tree(root: Path) -> None:
    """Two classes of cubes, train and test, with both header kinds."""
    for class_name in ("table", "chair"):
        for split, text in (("train", CUBE_OFF), ("test", CUBE_OFF_BROKEN)):
            folder = root / class_name / split
            folder.mkdir(parents=True)
            for number in (2, 1):
                (folder / f"{class_name}_000{number}.off").write_text(text)
    (root / ".ipynb_checkpoints").mkdir()  # debris a copy may carry: not a class


def test_modelnet40_off_samples_every_mesh_deterministically(tmp_path):
    root = tmp_path / "ModelNet40"
    off_tree(root)
    dataset = read_modelnet40_off(root, "train", n_points=64, seed=3, normals=True)
    assert dataset.class_names == ("chair", "table")
    assert dataset.points.shape == (4, 64, 6) and dataset.points.dtype == np.float32
    np.testing.assert_array_equal(dataset.labels, [0, 0, 1, 1])
    assert np.linalg.norm(dataset.points[..., :3], axis=-1).max() <= 1 + 1e-5  # normalised
    np.testing.assert_allclose(np.linalg.norm(dataset.points[..., 3:], axis=-1), 1.0, atol=1e-5)
    again = read_modelnet40_off(root, "train", n_points=64, seed=3, normals=True)
    np.testing.assert_array_equal(dataset.points, again.points)
    # Identical cubes, different files: each file has its own sampler seed, so the samples differ.
    assert not np.array_equal(dataset.points[0], dataset.points[1])
    other = read_modelnet40_off(root, "train", n_points=64, seed=4)
    assert not np.array_equal(dataset.points[..., :3], other.points)
    # Same file names and geometry, other header kind: the same points.
    test = read_modelnet40_off(root, "test", n_points=64, seed=3)
    np.testing.assert_array_equal(test.points, dataset.points[..., :3])


def test_modelnet40_off_errors_name_the_mesh_or_folder(tmp_path):
    root = tmp_path / "ModelNet40"
    off_tree(root)
    bad = root / "table" / "train" / "table_0003.off"
    bad.write_text("OFF\n0 0 0\n")
    with pytest.raises(DatasetError, match="mesh cannot be used: .*(empty|no faces)") as error:
        read_modelnet40_off(root, "train", n_points=8, seed=0)
    assert str(bad) in str(error.value)
    (root / "lamp" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="lamp/test: folder does not exist"):
        read_modelnet40_off(root, "test", n_points=8, seed=0)
    with pytest.raises(DatasetError, match="ModelNet40.*Princeton") as error:
        read_modelnet40_off(tmp_path / "nowhere", "train", n_points=8, seed=0)
    assert str(tmp_path / "nowhere") in str(error.value)


def test_modelnet40_off_on_the_genuine_meshes_with_both_headers(fixtures, tmp_path):
    """Genuine bathtubs: train/ holds the broken-header files (``OFF3514 3546 0``), test/ the
    same meshes with the header fixed; both must read, to the same points."""
    broken = fixtures / "modelnet_off" / "OFF2Multiview" / "dataset_samples"
    fixed = fixtures / "modelnet_off" / "OFF2MAT" / "ModelNet10" / "bathtub" / "train"
    if not broken.is_dir() or not fixed.is_dir():
        pytest.skip("modelnet_off samples not found in the genuine samples")
    assert (broken / "bathtub" / "bathtub_0001.off").read_text()[:5] == "OFF35"  # really the broken kind
    root = tmp_path / "ModelNet40"
    for split, folder in (("train", broken / "bathtub"), ("test", fixed)):
        (root / "bathtub" / split).mkdir(parents=True)
        for name in ("bathtub_0001.off", "bathtub_0002.off"):
            (root / "bathtub" / split / name).symlink_to((folder / name).resolve())
    (root / "bed" / "train").mkdir(parents=True)
    (root / "bed" / "test").mkdir()
    (root / "bed" / "train" / "bed_0001.off").symlink_to((broken / "bed" / "bed_0001.off").resolve())
    train = read_modelnet40_off(root, "train", n_points=512, seed=0)
    test = read_modelnet40_off(root, "test", n_points=512, seed=0)
    assert train.class_names == test.class_names == ("bathtub", "bed")
    np.testing.assert_array_equal(train.labels, [0, 0, 1])
    np.testing.assert_array_equal(test.labels, [0, 0])
    np.testing.assert_array_equal(train.points[:2], test.points)
    # The points lie on the mesh as load_mesh normalises it: inside the unit sphere, spanning it.
    radius = np.linalg.norm(train.points, axis=-1).max(axis=1)
    assert (radius <= 1 + 1e-5).all() and (radius > 0.8).all()
    mesh = load_mesh(root / "bathtub" / "train" / "bathtub_0001.off")
    world = mesh.world_vertices()
    assert (train.points[0].min(0) >= world.min(0) - 1e-5).all()
    assert (train.points[0].max(0) <= world.max(0) + 1e-5).all()


# --------------------------------------------------------------------------- ScanObjectNN


def test_scanobjectnn_reads_the_genuine_layout(tmp_path):
    root = tmp_path / "h5_files"
    data = random_points(4, n_points=32)
    mask = np.where(np.random.default_rng(0).random((4, 32)) < 0.3, -1, 5).astype(np.int64)
    labels = np.array([14, 0, 3, 14], dtype=np.int64)
    write_h5(root / "main_split" / "training_objectdataset_augmentedrot_scale75.h5",
             data=data, label=labels, mask=mask)
    write_h5(root / "main_split_nobg" / "test_objectdataset.h5", data=data[:2], label=labels[:2].astype(np.int32))
    dataset = read_scanobjectnn(root, "pb_t50_rs", "train")
    assert dataset.class_names == SCANOBJECTNN_CLASSES and len(SCANOBJECTNN_CLASSES) == 15
    assert dataset.class_names[14] == "toilet"
    np.testing.assert_array_equal(dataset.points, data)
    np.testing.assert_array_equal(dataset.labels, labels)
    np.testing.assert_array_equal(dataset.masks, mask)
    nobg = read_scanobjectnn(root, "obj_only", "test")
    assert nobg.masks is None and nobg.labels.dtype == np.int64
    np.testing.assert_array_equal(nobg.labels, [14, 0])
    with pytest.raises(DatasetError, match="main_split/test_objectdataset.h5: HDF5 file does not exist"):
        read_scanobjectnn(root, "obj_bg", "test")


@pytest.mark.parametrize("variant", sorted(VARIANT_FILES))
@pytest.mark.parametrize("with_extras", [False, True])
def test_scanobjectnn_writer_round_trip(tmp_path, variant, with_extras):
    root = tmp_path / "h5_files"
    points, labels = random_points(3, n_points=8), np.array([2, 0, 1])
    masks = np.array([[-1, 1] * 4] * 3) if with_extras else None
    names = ("mug", "lamp", "vase") if with_extras else None
    for split in ("train", "test"):
        path = write_scanobjectnn(root, variant, split, points, labels, masks=masks, class_names=names)
        prefix = "training" if split == "train" else "test"
        assert path == root / VARIANT_FILES[variant].format(split=prefix)
        dataset = read_scanobjectnn(root, variant, split)
        np.testing.assert_array_equal(dataset.points, points)
        np.testing.assert_array_equal(dataset.labels, labels)
        assert dataset.class_names == (names or SCANOBJECTNN_CLASSES)
        if with_extras:
            np.testing.assert_array_equal(dataset.masks, masks)
        else:
            assert dataset.masks is None
    assert (root / "shape_names.txt").is_file() == with_extras
    assert no_temporary_files(root)


def test_scanobjectnn_writer_checks_labels_against_the_names_a_reader_will_use(tmp_path):
    root = tmp_path / "h5_files"
    with pytest.raises(DatasetError, match="label 15 at index 0 is out of range for 15 classes"):
        write_scanobjectnn(root, "obj_bg", "train", random_points(1), np.array([15]))
    write_scanobjectnn(root, "obj_bg", "train", random_points(1), np.array([1]), class_names=["a", "b"])
    with pytest.raises(DatasetError, match="label 2 at index 0 is out of range for 2 classes"):
        write_scanobjectnn(root, "obj_only", "train", random_points(1), np.array([2]))
    with pytest.raises(DatasetError, match=r"points must have shape \(n, N, 3\)"):
        write_scanobjectnn(root, "obj_bg", "train", random_points(1, channels=6), np.array([0]))
    assert not (root / "main_split_nobg").exists()


def scanobjectnn_case(root: Path, case: str) -> tuple[str, str]:
    path = root / "main_split" / "test_objectdataset.h5"
    data, labels = random_points(3, n_points=8), np.array([0, 1, 2])
    if case == "missing key":
        write_h5(path, points=data, label=labels)
        return str(path), r"HDF5 key 'data' is missing \(keys present: \['label', 'points'\]\)"
    if case == "label out of range":
        write_h5(path, data=data, label=np.array([0, 15, 1]))
        return str(path), "label 15 at index 1 is out of range for 15 classes"
    if case == "length mismatch":
        write_h5(path, data=data, label=labels[:2])
        return str(path), "'label' has 2 entries but 'data' has 3 samples"
    if case == "mask shape":
        write_h5(path, data=data, label=labels, mask=np.zeros((3, 7), dtype=np.int64))
        return str(path), r"HDF5 key 'mask' has shape \(3, 7\), expected \(3, 8\)"
    if case == "wrong data shape":
        write_h5(path, data=data[:, :, :2], label=labels)
        return str(path), r"HDF5 key 'data' has shape \(3, 8, 2\)"
    if case == "truncated":
        write_h5(path, data=random_points(3, n_points=2048), label=labels)
        path.write_bytes(path.read_bytes()[:5000])
        return str(path), "not a readable HDF5 file|cannot be read"
    if case == "bad class names":
        write_h5(path, data=data, label=labels)
        (root / "shape_names.txt").write_text("a\nb\na\n")
        return str(root / "shape_names.txt"), "line 3: 'a' repeats line 1"
    raise AssertionError(case)


@pytest.mark.parametrize("case", ["missing key", "label out of range", "length mismatch", "mask shape",
                                  "wrong data shape", "truncated", "bad class names"])
def test_scanobjectnn_errors_name_the_file_and_problem(tmp_path, case):
    root = tmp_path / "h5_files"
    path, problem = scanobjectnn_case(root, case)
    with pytest.raises(DatasetError, match=problem) as error:
        read_scanobjectnn(root, "obj_bg", "test")
    assert path in str(error.value)


def test_scanobjectnn_missing_root_points_to_the_authors_terms(tmp_path):
    with pytest.raises(DatasetError, match="h5_files.*ScanObjectNN authors.*terms") as error:
        read_scanobjectnn(tmp_path / "nowhere", "obj_bg", "train")
    assert str(tmp_path / "nowhere") in str(error.value)
    tmp_path.joinpath("h5_files").mkdir()
    with pytest.raises(DatasetError, match="unknown ScanObjectNN variant 'hardest'"):
        read_scanobjectnn(tmp_path / "h5_files", "hardest", "train")


# --------------------------------------------------------------------------- dispatcher


def test_read_classification_dispatches_on_format(tmp_path):
    write_modelnet40_h5(tmp_path / "h5", "train", random_points(2), np.array([1, 2]), NAMES40)
    h5 = read_classification({"format": "modelnet40_h5", "root": str(tmp_path / "h5")}, "train")
    np.testing.assert_array_equal(h5.labels, [1, 2])
    resampled_tree(tmp_path / "resampled")
    resampled = read_classification({"format": "modelnet40_resampled", "root": str(tmp_path / "resampled"),
                                     "n_points": 2, "normals": True}, "test")
    assert resampled.points.shape == (1, 2, 6)
    off_tree(tmp_path / "off")
    off = read_classification({"format": "modelnet40_off", "root": tmp_path / "off", "n_points": 8, "seed": 1},
                              "test")
    assert off.points.shape == (4, 8, 3)
    write_scanobjectnn(tmp_path / "sonn", "obj_only", "test", random_points(1), np.array([4]))
    sonn = read_classification({"format": "scanobjectnn", "root": str(tmp_path / "sonn"), "variant": "obj_only"},
                               "test")
    assert sonn.class_names[int(sonn.labels[0])] == "chair"


@pytest.mark.parametrize("spec, problem", [
    ({"root": "x"}, "missing key 'format'"),
    ({"format": "shapenet", "root": "x"}, "key 'format' is 'shapenet', expected one of"),
    ({"format": "modelnet40_h5"}, "missing key 'root'"),
    ({"format": "modelnet40_resampled", "root": "x"}, "missing key 'n_points'"),
    ({"format": "modelnet40_off", "root": "x", "n_points": 8}, "missing key 'seed'"),
    ({"format": "modelnet40_off", "root": "x", "n_points": "8", "seed": 0}, "key 'n_points' must be int, got '8'"),
    ({"format": "modelnet40_resampled", "root": "x", "n_points": True}, "key 'n_points' must be int"),
    ({"format": "scanobjectnn", "root": "x"}, "missing key 'variant'"),
])
def test_read_classification_names_the_bad_key(spec, problem):
    with pytest.raises(DatasetError, match=problem):
        read_classification(spec, "train")
