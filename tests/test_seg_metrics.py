"""Segmentation metrics on hand-made cases with known IoU."""

from __future__ import annotations

import math

import numpy as np
import pytest

from picat.downstream.seg_metrics import (
    confusion_matrix,
    part_segmentation_scores,
    restrict_to_parts,
    scene_segmentation_scores,
    shape_part_ious,
)

PARTS = {"mug": [0, 1], "lamp": [2, 3, 4]}


def test_part_iou_by_hand_with_an_empty_union_counting_as_one():
    target = np.array([2, 2, 3, 3])
    prediction = np.array([2, 3, 3, 3])
    # part 2: inter 1, union 2 -> 0.5; part 3: inter 2, union 3 -> 2/3; part 4: absent from both -> 1.
    np.testing.assert_allclose(shape_part_ious(prediction, target, PARTS["lamp"]), [0.5, 2 / 3, 1.0])


def test_instance_and_class_miou_by_hand():
    shapes = [
        (np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), "mug"),    # IoUs 1, 1 -> 1
        (np.array([0, 1, 1, 1]), np.array([0, 0, 1, 1]), "mug"),    # 1/2, 2/3 -> 7/12
        (np.array([2, 3, 3, 3]), np.array([2, 2, 3, 3]), "lamp"),   # 1/2, 2/3, 1 -> 13/18
    ]
    scores = part_segmentation_scores(*zip(*shapes, strict=True), PARTS)
    assert scores["instance_miou"] == pytest.approx(100 * (1 + 7 / 12 + 13 / 18) / 3)
    assert scores["class_miou"] == pytest.approx(100 * ((1 + 7 / 12) / 2 + 13 / 18) / 2)
    assert scores["per_category"]["mug"] == pytest.approx(100 * 19 / 24) and scores["n_shapes"] == 3


def test_predictions_are_restricted_to_the_category_parts():
    logits = np.array([[0.0, 0.1, 9.0, 0.0, 0.0], [0.5, 0.2, 9.0, 9.0, 0.0]])
    assert restrict_to_parts(logits, PARTS["mug"]).tolist() == [1, 0]
    assert restrict_to_parts(logits, PARTS["lamp"]).tolist() == [2, 2]


def test_unknown_category_and_mismatched_lengths_are_clear_errors():
    with pytest.raises(ValueError, match="unknown category 'car'"):
        part_segmentation_scores([np.zeros(2, int)], [np.zeros(2, int)], ["car"], PARTS)
    with pytest.raises(ValueError, match="as many predictions"):
        part_segmentation_scores([np.zeros(2, int)], [], ["mug"], PARTS)


def test_scene_scores_by_hand_with_a_class_absent_from_one_room():
    # Room 1 has classes 0 and 1; room 2 has classes 0 and 2 (class 1 absent there).
    room1 = confusion_matrix(np.array([0, 0, 1, 0]), np.array([0, 0, 1, 1]), 4)
    room2 = confusion_matrix(np.array([0, 2, 2]), np.array([0, 2, 0]), 4)
    scores = scene_segmentation_scores(room1 + room2)
    # class 0: tp 3, fn 1, fp 1 -> IoU 3/5, acc 3/4; class 1: tp 1, fn 1 -> 1/2, 1/2;
    # class 2: tp 1, fp 1 -> 1/2, acc 1; class 3 never occurs -> NaN, left out of the means.
    assert scores["iou"][:3] == pytest.approx([60.0, 50.0, 50.0]) and math.isnan(scores["iou"][3])
    assert scores["miou"] == pytest.approx((60 + 50 + 50) / 3)
    assert scores["macc"] == pytest.approx(100 * (3 / 4 + 1 / 2 + 1) / 3)
    assert scores["overall_accuracy"] == pytest.approx(100 * 5 / 7)


def test_confusion_matrix_rejects_labels_out_of_range():
    with pytest.raises(ValueError, match=r"target labels must be in \[0, 3\), got \[0, 5\]"):
        confusion_matrix(np.array([0, 1]), np.array([0, 5]), 3)
