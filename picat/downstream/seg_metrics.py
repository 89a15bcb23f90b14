"""Segmentation metrics (Tables 4 and 5), as the peers define them.

Part segmentation (ShapeNetPart): a shape's IoU is the mean, over the parts of ITS category,
of |pred ∩ target| / |pred ∪ target|, where a part absent from both prediction and target
(empty union) counts as 1. Instance mIoU = mean over shapes; class mIoU = mean over
categories of that category's mean shape IoU. Predictions are restricted to the shape's
category parts (argmax over those logits only).

Scene segmentation (S3DIS): from the confusion matrix summed over every point of every test
room, IoU_c = tp / (tp + fp + fn) and Acc_c = tp / (tp + fn); mIoU and mAcc are their means
over the classes that occur (in the target or the prediction); a class that never occurs
anywhere has no defined IoU and is left out of the mean and reported as NaN.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np


def restrict_to_parts(logits: np.ndarray, parts: Sequence[int]) -> np.ndarray:
    """Argmax over the given part columns only.

    Args:
        logits: (N, P) scores over all parts of all categories.
        parts: the part labels of the shape's category.

    Returns:
        (N,) predicted part labels, each one of ``parts``.
    """
    parts = np.asarray(parts)
    n_parts = logits.shape[1]
    if parts.size == 0 or parts.min() < 0 or parts.max() >= n_parts:
        raise ValueError(f"parts must be part labels in [0, {n_parts}) (the logits' columns), got {parts.tolist()}")
    return parts[np.argmax(logits[:, parts], axis=1)]


def _check_part_labels(labels: np.ndarray, parts: Sequence[int], name: str, where: str) -> None:
    """Raise a ValueError naming ``where`` if a label of ``labels`` is not one of ``parts``."""
    bad = ~np.isin(labels, parts)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{where}: {name} label {int(np.ravel(labels)[index])} at point {index} is not one of the "
                         f"category's parts {list(parts)} ({int(bad.sum())} bad labels in all)")


def shape_part_ious(prediction: np.ndarray, target: np.ndarray, parts: Sequence[int],
                    where: str = "shape") -> np.ndarray:
    """(len(parts),) IoU of each category part on one shape; an empty union counts as 1.

    Raises:
        ValueError: a prediction or target label is not one of ``parts`` (negative, the
            number of parts or beyond, or another category's part), naming ``where``.
    """
    for name, labels in (("prediction", prediction), ("target", target)):
        _check_part_labels(np.asarray(labels), parts, name, where)
    ious = []
    for part in parts:
        predicted, actual = prediction == part, target == part
        union = np.logical_or(predicted, actual).sum()
        ious.append(1.0 if union == 0 else np.logical_and(predicted, actual).sum() / union)
    return np.asarray(ious, dtype=np.float64)


def part_segmentation_scores(predictions: Sequence[np.ndarray], targets: Sequence[np.ndarray],
                             categories: Sequence[str], category_parts: Mapping[str, Sequence[int]]) -> dict:
    """Instance and class mIoU (percent) over shapes.

    Args:
        predictions, targets: per shape, (N_i,) part labels.
        categories: per shape, its category name (a key of ``category_parts``).
        category_parts: category -> its part labels.

    Returns:
        {"instance_miou", "class_miou", "per_category": {category: mean shape IoU}, "n_shapes"}.

    Raises:
        ValueError: counts differ, an unknown category, or a prediction or target label that
            is not one of its shape's category parts (naming the shape).
    """
    if not (len(predictions) == len(targets) == len(categories)) or not predictions:
        raise ValueError(f"need as many predictions, targets and categories (>= 1), got "
                         f"{len(predictions)}, {len(targets)}, {len(categories)}")
    per_category: dict[str, list[float]] = defaultdict(list)
    shape_means = []
    for prediction, target, category in zip(predictions, targets, categories, strict=True):
        if category not in category_parts:
            raise ValueError(f"unknown category {category!r}; known: {sorted(category_parts)}")
        if prediction.shape != target.shape:
            raise ValueError(f"a {category} shape has {prediction.shape} predictions for {target.shape} targets")
        where = f"shape {len(shape_means)} ({category})"
        mean = float(shape_part_ious(prediction, target, category_parts[category], where).mean())
        per_category[category].append(mean)
        shape_means.append(mean)
    category_means = {category: float(np.mean(values)) for category, values in per_category.items()}
    return {"instance_miou": 100.0 * float(np.mean(shape_means)),
            "class_miou": 100.0 * float(np.mean(list(category_means.values()))),
            "per_category": {category: 100.0 * value for category, value in category_means.items()},
            "n_shapes": len(shape_means)}


def confusion_matrix(prediction: np.ndarray, target: np.ndarray, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts, rows = target, columns = prediction."""
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {prediction.shape} and target {target.shape} differ in shape")
    for name, labels in (("prediction", prediction), ("target", target)):
        if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
            raise ValueError(f"{name} labels must be in [0, {n_classes}), got [{labels.min()}, {labels.max()}]")
    flat = target.astype(np.int64) * n_classes + prediction.astype(np.int64)
    return np.bincount(flat.ravel(), minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def scene_segmentation_scores(confusion: np.ndarray) -> dict:
    """mIoU, mAcc and overall accuracy (percent) from a summed confusion matrix.

    Returns:
        {"miou", "macc", "overall_accuracy", "iou" (per class, NaN where the class never
        occurs), "accuracy" (per class, NaN where the class is not in the target)}.
    """
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    in_target, in_prediction = confusion.sum(axis=1), confusion.sum(axis=0)
    union = in_target + in_prediction - tp
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        accuracy = np.where(in_target > 0, tp / in_target, np.nan)
    return {"miou": 100.0 * float(np.nanmean(iou)), "macc": 100.0 * float(np.nanmean(accuracy)),
            "overall_accuracy": 100.0 * float(tp.sum() / confusion.sum()),
            "iou": (100.0 * iou).tolist(), "accuracy": (100.0 * accuracy).tolist()}
