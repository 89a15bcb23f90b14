"""Wiring guard: label ranges, at the segmentation metrics and at every reader that checks labels.

A label equal to the number of classes, or negative, is the classic off-by-one that a metric
or reader can let through silently (a bincount grows a row, an IoU counts a phantom part, a
training target indexes past the logits). Each function that takes labels must reject both
values on both sides (prediction and target) with one ValueError, and each dataset reader that
validates labels must reject both with a DatasetError naming the file. Each rejection test has
a control: the boundary labels 0 and n_classes - 1 are accepted, so a check that is too strict
fails too.

Files are written in the genuine layouts with the helpers of tests/test_datasets_*.py, then one
label is set to the bad value.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from test_datasets_classification import NAMES40, genuine_h5_tree, random_points, write_h5
from test_datasets_s3dis import write_raw_room
from test_datasets_shapenetpart import write_h5_layout, write_txt_layout
from test_seg_metrics import PARTS
from test_semseg import make_room
from torch import nn

from picat.datasets import DatasetError, read_modelnet40_h5, read_scanobjectnn, write_modelnet40_h5, write_scanobjectnn
from picat.datasets.s3dis import S3DIS_CLASSES, Room, convert_room, read_room, write_room
from picat.datasets.shapenetpart import CATEGORY_PARTS, read_shapenetpart_h5, read_shapenetpart_txt
from picat.downstream.seg_metrics import confusion_matrix, part_segmentation_scores, restrict_to_parts, shape_part_ious
from picat.downstream.semseg import SemSegSettings, evaluate_scene_segmenter, train_scene_segmenter

SIDES = ("prediction", "target")
VALUES = ("n_classes", "negative")
N_PARTS = 1 + max(max(parts) for parts in PARTS.values())  # 5: lamp's parts 2, 3, 4 end at N_PARTS - 1
N_SHAPENET_PARTS = sum(len(parts) for parts in CATEGORY_PARTS.values())  # 50


def bad_value(value: str, n_classes: int) -> int:
    """The out-of-range label a case stands for: ``n_classes`` itself or -1."""
    return n_classes if value == "n_classes" else -1


def with_label(labels: np.ndarray, index: int, label: int) -> np.ndarray:
    """A signed int64 copy of ``labels`` with ``labels[index] = label``."""
    labels = np.array(labels, dtype=np.int64)
    labels[index] = label
    return labels


def sides(good: np.ndarray, bad: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, target) with the bad labels on ``side``."""
    return (bad, good) if side == "prediction" else (good, bad)


def rewrite_h5_key(path: Path, key: str, value: np.ndarray) -> None:
    """Replace one key of an existing HDF5 file (signed int64, so -1 can be stored)."""
    with h5py.File(path, "r+") as handle:
        del handle[key]
        handle.create_dataset(key, data=value)


# --------------------------------------------------------------------------------------------
# segmentation metrics
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("side", SIDES)
def test_confusion_matrix_rejects_a_label_out_of_range(side: str, value: str) -> None:
    """Guards the scene-segmentation confusion matrix's [0, n_classes) check on either side."""
    n_classes = 4
    good = np.array([0, 1, 2, 3, 3])
    prediction, target = sides(good, with_label(good, 2, bad_value(value, n_classes)), side)
    with pytest.raises(ValueError, match=rf"{side} labels must be in \[0, {n_classes}\)"):
        confusion_matrix(prediction, target, n_classes)


def test_confusion_matrix_accepts_the_boundary_labels() -> None:
    """Control: labels 0 and n_classes - 1 on both sides are counted, not rejected."""
    matrix = confusion_matrix(np.array([0, 3, 3]), np.array([3, 0, 3]), 4)
    assert matrix.sum() == 3 and matrix[3, 0] == matrix[0, 3] == matrix[3, 3] == 1


def _part_case(value: str) -> tuple[str, int]:
    """(category, bad label) adjacent to the category's parts: lamp (2, 3, 4) with N_PARTS = 5,
    mug (0, 1) with -1."""
    return ("lamp", N_PARTS) if value == "n_classes" else ("mug", -1)


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("side", SIDES)
def test_shape_part_ious_rejects_a_label_out_of_range(side: str, value: str) -> None:
    """Guards one shape's part IoU: a label outside the category's parts on either side is an
    error, not a point silently counted against no part."""
    category, label = _part_case(value)
    good = np.array(PARTS[category] * 2)
    prediction, target = sides(good, with_label(good, 1, label), side)
    with pytest.raises(ValueError, match=rf"{side} label {label} at point 1 is not one of the category's parts"):
        shape_part_ious(prediction, target, PARTS[category])


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("side", SIDES)
def test_part_segmentation_scores_reject_a_label_out_of_range(side: str, value: str) -> None:
    """Guards the instance / class mIoU over shapes: the bad shape is named (index, category)."""
    category, label = _part_case(value)
    good = np.array(PARTS[category] * 2)
    prediction, target = sides(good, with_label(good, 0, label), side)
    first = np.array(PARTS["mug"])
    with pytest.raises(ValueError, match=rf"shape 1 \({category}\): {side} label {label} at point 0"):
        part_segmentation_scores([first, prediction], [first, target], ["mug", category], PARTS)


def test_part_metrics_accept_the_boundary_labels() -> None:
    """Control: part labels 0 (mug) and N_PARTS - 1 (lamp) on both sides score, perfectly."""
    mug, lamp = np.array([0, 1, 0]), np.array([4, 2, 3, 4])
    np.testing.assert_array_equal(shape_part_ious(lamp, lamp, PARTS["lamp"]), [1.0, 1.0, 1.0])
    scores = part_segmentation_scores([mug, lamp], [mug, lamp], ["mug", "lamp"], PARTS)
    assert scores["instance_miou"] == scores["class_miou"] == 100.0


@pytest.mark.parametrize("value", VALUES)
def test_restrict_to_parts_rejects_a_part_outside_the_logits(value: str) -> None:
    """Guards the argmax over a category's part columns: part -1 would silently read the last
    column, part n_parts is past the logits."""
    logits = np.random.default_rng(0).normal(size=(3, N_PARTS))
    label = bad_value(value, N_PARTS)
    with pytest.raises(ValueError, match=rf"in \[0, {N_PARTS}\).*got \[.*{label}"):
        restrict_to_parts(logits, [2, label])
    assert set(restrict_to_parts(logits, [0, N_PARTS - 1]).tolist()) <= {0, N_PARTS - 1}  # control


# --------------------------------------------------------------------------------------------
# scene segmentation: the rooms' labels (target side of training and evaluation)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("stage", ["training", "test"])
def test_scene_segmentation_rejects_a_room_label_out_of_range(stage: str, value: str) -> None:
    """Guards the room check before training and evaluation (before any model work)."""
    room = make_room("office_9", 1, 0)
    bad = Room(room.name, room.area, room.points, room.colors,
               with_label(room.labels, 5, bad_value(value, len(S3DIS_CLASSES))))
    settings = SemSegSettings.of({})
    with pytest.raises(ValueError, match=rf"{stage} room office_9: labels must be in \[0, {len(S3DIS_CLASSES)}\)"):
        if stage == "training":
            train_scene_segmenter(nn.Identity(), [bad], settings, 0)
        else:
            evaluate_scene_segmenter(nn.Identity(), [bad], settings, 0)


# --------------------------------------------------------------------------------------------
# dataset readers (and the writers that validate before writing)
# --------------------------------------------------------------------------------------------

def _assert_names_file(caught: pytest.ExceptionInfo, path: Path, label: int) -> None:
    message = str(caught.value)
    assert str(path) in message, f"the error does not name {path}: {message}"
    assert str(label) in message, f"the error does not give the bad label {label}: {message}"


@pytest.mark.parametrize("value", VALUES)
def test_modelnet40_h5_reader_rejects_a_label_out_of_range(tmp_path, value: str) -> None:
    """Guards read_modelnet40_h5's label check: 40 classes, label 40 or -1 in one file."""
    root = tmp_path / "modelnet40_ply_hdf5_2048"
    _, labels = genuine_h5_tree(root)
    assert read_modelnet40_h5(root, "train").labels.tolist() == labels.tolist()  # control: 0 and 39 are read
    path, label = root / "ply_data_train0.h5", bad_value(value, len(NAMES40))
    rewrite_h5_key(path, "label", with_label([5, 0, 39], 1, label)[:, None])
    with pytest.raises(DatasetError) as caught:
        read_modelnet40_h5(root, "train")
    _assert_names_file(caught, path, label)


@pytest.mark.parametrize("value", VALUES)
def test_scanobjectnn_reader_rejects_a_label_out_of_range(tmp_path, value: str) -> None:
    """Guards read_scanobjectnn's label check: 15 classes, label 15 or -1."""
    root = tmp_path / "h5_files"
    path = root / "main_split" / "test_objectdataset.h5"
    write_h5(path, data=random_points(3, n_points=8), label=np.array([0, 14, 1]))
    assert read_scanobjectnn(root, "obj_bg", "test").labels.tolist() == [0, 14, 1]  # control
    label = bad_value(value, 15)
    rewrite_h5_key(path, "label", with_label([0, 14, 1], 1, label))
    with pytest.raises(DatasetError) as caught:
        read_scanobjectnn(root, "obj_bg", "test")
    _assert_names_file(caught, path, label)


@pytest.mark.parametrize("value", VALUES)
def test_shapenetpart_text_reader_rejects_a_part_out_of_range(tmp_path, value: str) -> None:
    """Guards read_shapenetpart_txt's part check: 50 parts, part 50 or -1 in one shape file."""
    write_txt_layout(tmp_path)
    assert read_shapenetpart_txt(tmp_path, "train").parts[0].tolist() == [0, 1, 2, 3, 3]  # control
    path, label = tmp_path / "02691156" / "aaa.txt", bad_value(value, N_SHAPENET_PARTS)
    table = np.loadtxt(path)
    table[2, 6] = label
    np.savetxt(path, table, fmt="%.6f")
    with pytest.raises(DatasetError) as caught:
        read_shapenetpart_txt(tmp_path, "train")
    _assert_names_file(caught, path, label)


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("key", ["label", "pid"])
def test_shapenetpart_h5_reader_rejects_a_label_out_of_range(tmp_path, key: str, value: str) -> None:
    """Guards read_shapenetpart_h5's checks of the category ``label`` (2 categories listed)
    and of the part ``pid`` (50 parts)."""
    write_h5_layout(tmp_path)
    assert read_shapenetpart_h5(tmp_path, "val").categories.tolist() == [1, 0]  # control
    path = tmp_path / "ply_data_val0.h5"
    if key == "label":
        label = bad_value(value, 2)
        rewrite_h5_key(path, "label", with_label([1, 0], 1, label)[:, None])
    else:
        label = bad_value(value, N_SHAPENET_PARTS)
        pid = np.array([[36] * 4 + [37] * 4, [0, 1, 2, 3] * 2], dtype=np.int64)
        pid[1, 3] = label
        rewrite_h5_key(path, "pid", pid)
    with pytest.raises(DatasetError) as caught:
        read_shapenetpart_h5(tmp_path, "val")
    _assert_names_file(caught, path, label)


@pytest.mark.parametrize("value", VALUES)
def test_s3dis_room_reader_rejects_a_label_out_of_range(tmp_path, value: str) -> None:
    """Guards read_room's label check: 13 classes, label 13 or -1 in a converted room."""
    array, _ = convert_room(write_raw_room(tmp_path / "raw", 1, "office_1", {"ceiling_1": 3, "clutter_1": 4}))
    path = tmp_path / "rooms" / "Area_1_office_1.npy"
    write_room(array, path)
    assert set(read_room(path).labels.tolist()) == {0, len(S3DIS_CLASSES) - 1}  # control: ceiling 0, clutter 12
    label = bad_value(value, len(S3DIS_CLASSES))
    array[4, 6] = label
    write_room(array, path)
    with pytest.raises(DatasetError) as caught:
        read_room(path)
    _assert_names_file(caught, path, label)


@pytest.mark.parametrize("value", VALUES)
@pytest.mark.parametrize("writer", ["modelnet40_h5", "scanobjectnn"])
def test_dataset_writers_reject_a_label_out_of_range(tmp_path, writer: str, value: str) -> None:
    """Guards the writers' label check (stand-ins are written with them): nothing is written."""
    names = ["a", "b", "c"]
    label = bad_value(value, len(names))
    labels = with_label([0, 2, 1], 1, label)
    with pytest.raises(DatasetError, match=rf"label {label} at index 1 is out of range for 3 classes"):
        if writer == "modelnet40_h5":
            write_modelnet40_h5(tmp_path / "out", "train", random_points(3), labels, names)
        else:
            write_scanobjectnn(tmp_path / "out", "obj_bg", "train", random_points(3), labels, class_names=names)
    assert not any(path.is_file() for path in tmp_path.rglob("*"))
