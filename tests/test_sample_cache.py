"""Farthest point samples computed once per pre-training run (picat.pretrain.samples): the
backbones take them in place of their own FPS with identical outputs, they equal FPS of the
rotated clouds, and a training step / run with them has the losses of one without."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from test_pretrain_engine import ToyBackbone, toy_data  # noqa: F401  (the shared fixture)
from torch.utils.data import default_collate

import picat.models.dgcnn as dgcnn_module
import picat.models.pointnext as pointnext_module
from picat.models.dgcnn import DGCNN, DGCNNConfig
from picat.models.ops import farthest_point_sample, gather_points
from picat.models.pointnext import PointNeXtConfig, PointNeXtEncoder
from picat.pretrain.correspondence import random_rotations, rotate_with_cameras
from picat.pretrain.data import ShardObjects
from picat.pretrain.engine import TrainSettings, batch_rotations, step_loss, train
from picat.pretrain.model import PicAtPoint
from picat.pretrain.samples import object_samples, with_object_samples

N_POINTS = 32
CPU = torch.device("cpu")


def tiny_pointnext() -> PointNeXtEncoder:
    return PointNeXtEncoder(PointNeXtConfig(width=8, nsample=8, radius=0.3))  # min_points 16


def tiny_dgcnn(local_centres: int | None = 8) -> DGCNN:
    return DGCNN(DGCNNConfig(k=4, emb_dims=16, edge_channels=(8, 8), local_centres=local_centres))


def tiny_segmentation_pointnext() -> PointNeXtEncoder:
    """No group-all stage, and InvResMLP blocks after a set abstraction."""
    return PointNeXtEncoder(PointNeXtConfig(width=8, nsample=8, radius=0.3, strides=(1, 2, 4), blocks=(1, 2, 1),
                                            group_all=False))


BACKBONES = {"pointnext": tiny_pointnext, "dgcnn": tiny_dgcnn, "pointnext_seg": tiny_segmentation_pointnext}


def clouds(batch: int = 3, n_points: int = N_POINTS, seed: int = 0) -> torch.Tensor:
    """Generic clouds: Gaussian coordinates, no two distances tied."""
    return torch.randn(batch, n_points, 3, generator=torch.Generator().manual_seed(seed)) * 0.4


def test_pointnext_sample_indices_are_its_set_abstractions_fps() -> None:
    encoder = tiny_pointnext()
    points = clouds()
    assert encoder.sample_sizes(N_POINTS) == (16, 8, 4, 2) and encoder.sample_count(N_POINTS) == 30
    samples = encoder.sample_indices(points)
    assert samples.shape == (3, 30) and samples.dtype == torch.long
    xyz, expected = points, []
    for size in (16, 8, 4, 2):  # each stage's FPS on the previous stage's centres
        keep = farthest_point_sample(xyz, size)
        expected.append(keep)
        xyz = gather_points(xyz, keep)
    assert torch.equal(samples, torch.cat(expected, dim=1))
    segmentation = PointNeXtEncoder(PointNeXtConfig(width=8, strides=(1, 4, 4), blocks=(1, 1, 1), group_all=False))
    assert segmentation.sample_sizes(64) == (16, 4)


@pytest.mark.parametrize("name", ["pointnext", "dgcnn", "pointnext_seg"])
@pytest.mark.parametrize("dtype", [torch.long, torch.int16])
def test_forward_features_with_samples_equals_without(name: str, dtype: torch.dtype) -> None:
    """Given its own picks (stored as any integer type), a backbone computes exactly what it
    computes with its own FPS, in train mode (batch statistics) and with gradients."""
    torch.manual_seed(0)
    model = BACKBONES[name]().double().train()
    points = clouds().double()
    samples = model.sample_indices(points).to(dtype)
    own = model.forward_features(points.clone().requires_grad_())
    given = model.forward_features(points.clone().requires_grad_(), samples=samples)
    for a, b in zip(own, given, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["pointnext", "dgcnn"])
def test_backbones_without_samples_never_call_fps_when_given_them(name: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    model = BACKBONES[name]()
    points = clouds()
    samples = model.sample_indices(points)
    module = pointnext_module if name == "pointnext" else dgcnn_module

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("FPS ran although samples were given")

    monkeypatch.setattr(module, "farthest_point_sample", refuse)
    model.forward_features(points, samples=samples)
    with pytest.raises(AssertionError, match="FPS ran"):
        model.forward_features(points)


@pytest.mark.parametrize("name", ["pointnext", "dgcnn"])
def test_bad_samples_raise(name: str) -> None:
    model = BACKBONES[name]()
    points = clouds()
    samples = model.sample_indices(points)
    with pytest.raises(ValueError, match="samples must have shape"):
        model.forward_features(points, samples=samples[:, :-1])
    with pytest.raises(ValueError, match="samples must have shape"):
        model.forward_features(points, samples=samples[:2])
    with pytest.raises(ValueError, match="integer indices"):
        model.forward_features(points, samples=samples.float())


def test_dgcnn_without_local_centres_samples_nothing() -> None:
    model = tiny_dgcnn(local_centres=None)
    points = clouds()
    assert model.sample_count(N_POINTS) == 0 and model.sample_indices(points).shape == (3, 0)
    for a, b in zip(model.forward_features(points), model.forward_features(points, model.sample_indices(points)),
                    strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["pointnext", "dgcnn"])
def test_samples_of_the_unrotated_cloud_are_fps_of_the_rotated_one(name: str) -> None:
    """Rotations keep distances: for generic clouds (no near-ties) the picks are the same."""
    model = BACKBONES[name]()
    points = clouds(batch=16, seed=1)
    rotation = random_rotations(16, "so3", generator=torch.Generator().manual_seed(2))
    rotated, _ = rotate_with_cameras(points, torch.eye(4).expand(16, 4, 4), rotation)
    assert not torch.allclose(rotated, points)
    assert torch.equal(model.sample_indices(points), model.sample_indices(rotated))
    first = model.sample_indices(points)[:, :16 if name == "pointnext" else 8]
    assert torch.equal(first, farthest_point_sample(rotated, first.shape[1]))


@pytest.mark.parametrize("name", ["pointnext", "dgcnn"])
def test_object_samples_are_each_objects_fps_on_its_rotated_cloud(toy_data, name: str) -> None:  # noqa: F811
    shards, features = toy_data
    dataset = ShardObjects(shards, features, N_POINTS)
    model = BACKBONES[name]()
    log = io.StringIO()
    samples = object_samples(dataset, model, CPU, batch_size=4, log=log)  # batches of 4 cross no shard
    assert samples.dtype == np.int16 and samples.shape == (len(dataset), model.sample_count(N_POINTS))
    assert "farthest point sampling of 17 objects" in log.getvalue()
    cached = dataset.with_samples(samples)
    assert dataset.samples is None and "samples" not in dataset[(0, 0)]  # the original is unchanged
    batch = default_collate([cached[(index, index % dataset.n_views)] for index in range(len(dataset))])
    rotation = random_rotations(len(dataset), "so3", generator=torch.Generator().manual_seed(5))
    rotated, _ = rotate_with_cameras(batch["points"], batch["view"], rotation)
    assert batch["samples"].dtype == torch.int16
    assert torch.equal(batch["samples"].long(), model.sample_indices(rotated))
    # The clouds the samples were computed on are the items' clouds.
    assert np.array_equal(np.concatenate(list(dataset.clouds(5))), batch["points"].numpy())


def test_backbones_without_fps_get_no_samples(toy_data) -> None:  # noqa: F811
    shards, features = toy_data
    dataset = ShardObjects(shards, features, N_POINTS)
    assert object_samples(dataset, ToyBackbone(), CPU) is None
    assert object_samples(dataset, tiny_dgcnn(local_centres=None), CPU) is None
    assert with_object_samples(dataset, ToyBackbone(), CPU) is dataset
    with pytest.raises(ValueError, match="one row per object"):
        dataset.with_samples(np.zeros((3, 4), dtype=np.int16))


@pytest.mark.parametrize("name", ["pointnext", "dgcnn"])
def test_step_loss_with_cached_samples_equals_without(toy_data, name: str) -> None:  # noqa: F811
    """One training step (so3 rotations) on the same batch: the loss and every gradient are
    the same whether the backbone runs FPS on the rotated clouds or takes the cached picks."""
    shards, features = toy_data
    dataset = with_object_samples(ShardObjects(shards, features, N_POINTS), BACKBONES[name](), CPU)
    items = [(index, (3 * index) % dataset.n_views) for index in range(8)]
    batch = default_collate([dataset[item] for item in items])
    batch = {key: value.double() if value.is_floating_point() else value for key, value in batch.items()}
    settings = TrainSettings(epochs=1, batch_size=8, seed=3)
    rotation = batch_rotations(settings, 0, 0, 8).double()
    results = []
    for use_samples in (False, True):
        torch.manual_seed(0)
        model = PicAtPoint(BACKBONES[name](), image_dim=8, latent_dim=12, pose_dim=4).double()
        given = batch if use_samples else {key: value for key, value in batch.items() if key != "samples"}
        losses = step_loss(model, given, rotation, settings)
        losses["objective"].backward()
        results.append((losses, {n: p.grad for n, p in model.named_parameters()}))
    (plain, plain_grads), (cached, cached_grads) = results
    for key in ("loss", "local", "global", "valid_fraction"):
        torch.testing.assert_close(cached[key], plain[key], rtol=1e-12, atol=1e-12)
    assert plain["loss"] > 0
    for key, grad in plain_grads.items():
        torch.testing.assert_close(cached_grads[key], grad, rtol=1e-10, atol=1e-12)


def test_train_computes_fps_once_and_matches_a_run_without(toy_data, tmp_path,  # noqa: F811
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """train() computes PointNeXt's picks once per run (one batch per shard, 4 set
    abstractions each), not in each of its 4 steps; the history equals that of a run with FPS
    in every step."""
    shards, features = toy_data
    calls = {"count": 0}

    def counted(*args: object, **kwargs: object) -> torch.Tensor:
        calls["count"] += 1
        return farthest_point_sample(*args, **kwargs)

    monkeypatch.setattr(pointnext_module, "farthest_point_sample", counted)
    settings = TrainSettings(epochs=1, batch_size=4, seed=7)
    histories, counts = [], []
    for cache in (True, False):
        calls["count"] = 0
        torch.manual_seed(0)
        model = PicAtPoint(tiny_pointnext(), image_dim=8, latent_dim=12, pose_dim=4)
        log = io.StringIO()
        histories.append(train(model, ShardObjects(shards, features, N_POINTS), settings, tmp_path / str(cache),
                               device=CPU, log=log, cache_samples=cache))
        counts.append(calls["count"])
        assert ("farthest point sampling" in log.getvalue()) == cache
    assert counts == [2 * 4, 4 * 4]  # two shards x 4 stages; 4 steps x 4 stages
    for cached, plain in zip(*histories, strict=True):
        for key in ("loss", "local", "global", "valid_fraction"):
            assert cached[key] == pytest.approx(plain[key], rel=1e-6, abs=1e-9), key
