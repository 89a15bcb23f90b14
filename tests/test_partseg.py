"""The part-segmentation protocol on tiny synthetic shapes with stand-in networks of the
``model(points (B, N, C), category (B,)) -> (B, N, 50)`` signature."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from torch import nn

from picat.datasets.shapenetpart import CATEGORY_PARTS, PartSegmentationSet
from picat.downstream.partseg import (
    PartSegSettings,
    augment,
    evaluate_part_segmenter,
    global_categories,
    normalise_shape,
    predict_parts,
    run_part_segmentation,
    sample_points,
    train_part_segmenter,
)

NAMES = ("Mug", "Airplane")  # local order differs from the benchmark's (Airplane 0, Mug 11)
FIRST_PARTS = [parts[0] for parts in CATEGORY_PARTS.values()]


def shape(category: str, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A noisy sphere with normals; Mug parts split by z, Airplane parts 0/1 split by x (2, 3 absent)."""
    xyz = rng.normal(size=(n, 3))
    xyz /= np.linalg.norm(xyz, axis=1, keepdims=True)
    parts = np.where(xyz[:, 2] > 0, 36, 37) if category == "Mug" else np.where(xyz[:, 0] > 0, 0, 1)
    points = np.c_[1.5 * xyz + 0.3, xyz].astype(np.float32)  # off-centre and too large, so normalising matters
    return points, parts.astype(np.int64)


def dataset(categories: list[int], n: int, seed: int) -> PartSegmentationSet:
    rng = np.random.default_rng(seed)
    shapes = [shape(NAMES[c], n, rng) for c in categories]
    return PartSegmentationSet([s[0] for s in shapes], [s[1] for s in shapes], np.asarray(categories, dtype=np.int64),
                               NAMES, [f"shape{i}" for i in range(len(categories))])


class TinyPartSegmenter(nn.Module):
    """A per-point MLP plus a pooled context and a category embedding."""

    def __init__(self, in_channels: int = 3, width: int = 32):
        super().__init__()
        self.point = nn.Sequential(nn.Linear(in_channels, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())
        self.category = nn.Embedding(16, width)
        self.head = nn.Linear(2 * width, 50)

    def forward(self, points: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        features = self.point(points)
        context = features.max(dim=1, keepdim=True).values + self.category(category)[:, None]
        return self.head(torch.cat([features, context.expand_as(features)], dim=-1))


class LookupOracle(nn.Module):
    """Returns one-hot logits of the true part, found from the normalised coordinates; records categories."""

    def __init__(self, data: PartSegmentationSet, decoy: float = 0.0):
        super().__init__()
        self.table = {}
        for points, parts in zip(data.points, data.parts, strict=True):
            for xyz, part in zip(normalise_shape(points[:, :3]), parts, strict=True):
                self.table[tuple(np.round(xyz, 4))] = int(part)
        self.decoy = decoy
        self.seen_categories: list[int] = []

    def forward(self, points: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        self.seen_categories.extend(category.tolist())
        logits = torch.zeros(points.shape[0], points.shape[1], 50)
        for b in range(points.shape[0]):
            for n in range(points.shape[1]):
                logits[b, n, self.table[tuple(np.round(points[b, n, :3].numpy(), 4))]] = 10.0
        logits[..., 0] += self.decoy  # an Airplane part, outside every other category
        return logits


class FirstPart(nn.Module):
    """Prefers the first part of every category everywhere."""

    def forward(self, points: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(points.shape[0], points.shape[1], 50)
        logits[..., FIRST_PARTS] = 1.0
        return logits


class RandomLogits(nn.Module):
    def forward(self, points: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        return torch.randn(points.shape[0], points.shape[1], 50)


def test_sample_points_without_replacement_or_covering_every_point():
    rng = np.random.default_rng(0)
    points, parts = np.arange(30, dtype=np.float32).reshape(10, 3), np.arange(10)
    few, few_parts = sample_points(points, parts, 6, rng)
    assert few.shape == (6, 3) and len(np.unique(few_parts)) == 6
    np.testing.assert_array_equal(few[:, 0] / 3, few_parts)  # points and labels stay paired
    many, many_parts = sample_points(points, parts, 25, rng)
    assert many.shape == (25, 3) and set(many_parts.tolist()) == set(range(10))


def test_categories_are_passed_in_the_benchmark_order():
    data = dataset([0, 1, 0], 20, seed=1)
    np.testing.assert_array_equal(global_categories(data), [11, 0, 11])
    oracle = LookupOracle(data)
    evaluate_part_segmenter(oracle, data, PartSegSettings(n_points=16, batch_size=2), seed=0)
    assert oracle.seen_categories == [11, 0, 11]
    bad = PartSegmentationSet(data.points, data.parts, data.categories, ("Mug", "Bottle"), data.shape_ids)
    with pytest.raises(ValueError, match="Bottle"):
        global_categories(bad)


def test_oracle_scores_100_and_predictions_stay_in_the_category_parts():
    data = dataset([0, 1, 1], 100, seed=2)
    settings = PartSegSettings(n_points=64, batch_size=2)
    scores = evaluate_part_segmenter(LookupOracle(data), data, settings, seed=0)
    assert scores["instance_miou"] == pytest.approx(100.0) and scores["class_miou"] == pytest.approx(100.0)
    assert scores["n_shapes"] == 3 and scores["n_points"] == 3 * 64
    # a decoy Airplane part that dominates everywhere must not leak into Mug predictions
    decoyed = predict_parts(LookupOracle(data, decoy=100.0), data, settings, seed=0)
    assert all((p == t).all() for p, t, name in zip(*decoyed, strict=True) if name == "Mug")
    for prediction, _, name in zip(*predict_parts(RandomLogits(), data, settings, seed=0), strict=True):
        assert set(prediction.tolist()) <= set(CATEGORY_PARTS[name])


def test_scores_by_hand_with_every_point_scored_once():
    data = dataset([0, 1, 0], 100, seed=3)
    # 128 > 100: the whole shape plus repeats is fed, each distinct point is scored once
    scores = evaluate_part_segmenter(FirstPart(), data, PartSegSettings(n_points=128, batch_size=3), seed=0)
    mug = [(parts == 36).mean() / 2 for parts, c in zip(data.parts, data.categories, strict=True) if c == 0]
    airplane = [((parts == 0).mean() + 0 + 1 + 1) / 4
                for parts, c in zip(data.parts, data.categories, strict=True) if c == 1]
    assert scores["n_points"] == 300
    assert scores["instance_miou"] == pytest.approx(100 * np.mean(mug + airplane))
    assert scores["class_miou"] == pytest.approx(100 * (np.mean(mug) + np.mean(airplane)) / 2)
    assert scores["per_category"]["Airplane"] == pytest.approx(100 * airplane[0])


def test_training_lowers_the_loss_and_a_run_is_reproducible():
    train, test = dataset([0, 1, 0, 1], 64, seed=4), dataset([0, 1], 64, seed=5)
    settings = PartSegSettings(epochs=8, batch_size=2, n_points=48, optimizer="adamw", lr=0.01, min_lr=0.001,
                               label_smoothing=0.0)
    results = []
    for _ in range(2):
        torch.manual_seed(0)
        log = io.StringIO()
        results.append(run_part_segmentation(TinyPartSegmenter(), train, test, settings, seed=3, log=log))
    history = results[0]["history"]
    assert len(history) == 8 and history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert history[-1]["lr"] < history[0]["lr"]
    assert [row["train_loss"] for row in history] == [row["train_loss"] for row in results[1]["history"]]
    assert results[0]["test"] == results[1]["test"]
    assert results[0]["settings"]["optimizer"] == "adamw" and "epoch 8/8" in log.getvalue()
    assert results[0]["test"]["instance_miou"] > 50.0


def test_sgd_with_normals_trains_on_six_channels():
    train = dataset([0, 1], 32, seed=6)
    settings = PartSegSettings(epochs=2, batch_size=2, n_points=16, normals=True)
    history = train_part_segmenter(TinyPartSegmenter(in_channels=6), train, settings, seed=0, log=io.StringIO())
    assert len(history) == 2 and np.isfinite(history[-1]["train_loss"])
    with pytest.raises(ValueError, match="normals"):
        xyz_only = PartSegmentationSet([p[:, :3] for p in train.points], train.parts, train.categories, NAMES,
                                       train.shape_ids)
        train_part_segmenter(TinyPartSegmenter(), xyz_only, settings, seed=0, log=io.StringIO())


def test_augmented_normals_stay_normal_to_the_surface():
    t = np.linspace(-1, 1, 8)
    plane = np.c_[t, -t, np.zeros_like(t), np.full((8, 2), 1 / np.sqrt(2)) * [1, 1], np.zeros(8)]
    points = torch.from_numpy(np.repeat(plane[None], 4, axis=0).astype(np.float32))
    out = augment(points, PartSegSettings(), torch.Generator().manual_seed(0))
    tangent = out[:, 1, :3] - out[:, 0, :3]
    normals = out[:, :, 3:6]
    torch.testing.assert_close(normals.norm(dim=-1), torch.ones(4, 8))
    assert torch.einsum("bc,bnc->bn", tangent, normals).abs().max() < 1e-5
    assert not torch.allclose(out[0, :, :3], points[0, :, :3])  # it did scale or shift


def test_wrong_output_shape_and_settings_errors_are_named():
    data = dataset([0], 8, seed=7)

    class Wrong(nn.Module):
        def forward(self, points, category):
            return torch.zeros(points.shape[0], 50, points.shape[1])

    with pytest.raises(ValueError, match="expected"):
        evaluate_part_segmenter(Wrong(), data, PartSegSettings(n_points=8), seed=0)
    with pytest.raises(ValueError, match="downstream.partseg.*epoch"):
        PartSegSettings.of({"epoch": 3})
    with pytest.raises(ValueError, match="downstream.partseg.optimizer"):
        PartSegSettings.of({"optimizer": "adam"})
    with pytest.raises(ValueError, match="downstream.partseg.batch_size"):
        train_part_segmenter(TinyPartSegmenter(), data, PartSegSettings(batch_size=4), seed=0, log=io.StringIO())
    assert PartSegSettings.of({"scale_range": [0.5, 2.0]}).scale_range == (0.5, 2.0)
