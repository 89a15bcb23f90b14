"""ShapeNetPart readers on files written here in the genuine text and HDF5 layouts."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from picat.datasets import DatasetError
from picat.datasets.shapenetpart import CATEGORY_PARTS, read_shapenetpart_h5, read_shapenetpart_txt
from picat.downstream.seg_metrics import part_segmentation_scores


def write_txt_layout(root, bad_part: bool = False):
    (root / "train_test_split").mkdir(parents=True)
    (root / "synsetoffset2category.txt").write_text("Airplane\t02691156\nMug\t03797390\n")
    rng = np.random.default_rng(0)
    shapes = {"02691156/aaa": (5, [0, 1, 2, 3, 3]), "03797390/bbb": (3, [36, 37, 99 if bad_part else 36])}
    for key, (n, parts) in shapes.items():
        (root / key.split("/")[0]).mkdir(exist_ok=True)
        table = np.c_[rng.normal(size=(n, 6)), parts]
        np.savetxt(root / f"{key}.txt", table, fmt="%.6f")
    (root / "train_test_split" / "shuffled_train_file_list.json").write_text(
        json.dumps([f"shape_data/{key}" for key in shapes]))
    return shapes


def test_text_layout_reads_points_normals_parts_and_categories(tmp_path):
    shapes = write_txt_layout(tmp_path)
    data = read_shapenetpart_txt(tmp_path, "train")
    assert data.category_names == ("Airplane", "Mug") and data.categories.tolist() == [0, 1]
    assert [p.shape for p in data.points] == [(5, 6), (3, 6)] and data.points[0].dtype == np.float32
    assert data.parts[0].tolist() == shapes["02691156/aaa"][1] and data.shape_ids == ["02691156/aaa", "03797390/bbb"]
    np.testing.assert_allclose(data.points[1], np.loadtxt(tmp_path / "03797390/bbb.txt")[:, :6], rtol=1e-6)
    assert read_shapenetpart_txt(tmp_path, "train", normals=False).points[0].shape == (5, 3)
    # The reader's output feeds the metrics directly: a perfect prediction scores 100.
    scores = part_segmentation_scores(data.parts, data.parts, [data.category_names[c] for c in data.categories],
                                      data.category_parts())
    assert scores["instance_miou"] == 100.0


def test_text_layout_errors_name_the_file(tmp_path):
    write_txt_layout(tmp_path, bad_part=True)
    with pytest.raises(DatasetError, match=r"bbb\.txt: point 2 has part label 99, not a part of Mug"):
        read_shapenetpart_txt(tmp_path, "train")
    (tmp_path / "03797390/bbb.txt").unlink()
    with pytest.raises(DatasetError, match=r"shape_data/03797390/bbb.*does not exist"):
        read_shapenetpart_txt(tmp_path, "train")
    with pytest.raises(DatasetError, match="shuffled_test_file_list.json: split list does not exist"):
        read_shapenetpart_txt(tmp_path, "test")
    with pytest.raises(DatasetError, match="dataset folder does not exist"):
        read_shapenetpart_txt(tmp_path / "nowhere", "train")


def write_h5_layout(root, pid_key: str = "pid"):
    root.mkdir(parents=True, exist_ok=True)
    (root / "all_object_categories.txt").write_text("Airplane 02691156\nMug 03797390\n")
    (root / "val_hdf5_file_list.txt").write_text("hdf5_data/ply_data_val0.h5\n")
    with h5py.File(root / "ply_data_val0.h5", "w") as f:
        f["data"] = np.random.default_rng(0).normal(size=(2, 8, 3)).astype(np.float32)
        f["label"] = np.array([[1], [0]], dtype=np.uint8)
        f[pid_key] = np.array([[36] * 4 + [37] * 4, [0, 1, 2, 3] * 2], dtype=np.uint8)


def test_hdf5_layout_reads_and_checks_parts(tmp_path):
    write_h5_layout(tmp_path)
    data = read_shapenetpart_h5(tmp_path, "val")
    assert data.categories.tolist() == [1, 0] and data.parts[0].tolist() == [36] * 4 + [37] * 4
    assert data.points[1].shape == (8, 3) and data.shape_ids == ["ply_data_val0.h5:0", "ply_data_val0.h5:1"]
    assert set(CATEGORY_PARTS) >= set(data.category_names) and len(CATEGORY_PARTS) == 16
    assert sum(len(parts) for parts in CATEGORY_PARTS.values()) == 50


def test_hdf5_layout_errors_name_the_file_and_key(tmp_path):
    write_h5_layout(tmp_path / "a", pid_key="seg")
    with pytest.raises(DatasetError, match=r"ply_data_val0.h5: HDF5 key 'pid' is missing \(keys present"):
        read_shapenetpart_h5(tmp_path / "a", "val")
    write_h5_layout(tmp_path / "b")
    path = tmp_path / "b" / "ply_data_val0.h5"
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(DatasetError, match="ply_data_val0.h5: not a readable HDF5 file"):
        read_shapenetpart_h5(tmp_path / "b", "val")
    with pytest.raises(DatasetError, match="split must be one of"):
        read_shapenetpart_h5(tmp_path / "b", "everything")
