"""The camera belongs to the image: wiring tests for the shard -> dataset -> training path.

Every (object, view) of the shards built here is identifiable from each of its arrays
alone: the image's colour encodes object and view, the view matrix encodes the object in
its camera distance and the view in its direction, the projection matrix encodes the object
in its field of view and the view in its principal-point offset, and the points (and
normals) encode the object in their scale (rotation). A sample whose image, cached
features, view matrix, projection matrix and points do not all name the same (object, view)
has been mis-wired somewhere between :class:`picat.shards.ShardWriter`, the encode cache
(:func:`picat.stages.encode.encode_shard`), :class:`picat.pretrain.data.ShardObjects`, the
sampler (:class:`EpochSampler`, :class:`GlobalBatchSlices`) and the training loop
(:func:`picat.pretrain.engine.train`). The shards have different sizes, so the mapping of
global object indices to (shard, row) is exercised at both shard boundaries.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from test_pretrain_engine import ToyBackbone, ToyEncoder, toy_data  # noqa: F401  (the shared fixture)
from torch import Tensor, nn
from torch.utils.data import DataLoader

import picat.pretrain.engine as engine
from picat.geometry import dodecahedron_cameras
from picat.pretrain.data import EpochSampler, ShardObjects
from picat.pretrain.distributed import GlobalBatchSlices, Ranks
from picat.pretrain.engine import TrainSettings, train
from picat.pretrain.model import PicAtPoint
from picat.shards import ShardObject, ShardWriter
from picat.stages.encode import encode_shard

SHARD_SIZES = (5, 3, 4)  # different sizes: global index -> (shard, row) is not a fixed stride
N_VIEWS = 5
N_STORED_POINTS, N_POINTS = 16, 8  # the dataset reads the first N_POINTS of each object's samples
IMAGE_SIZE = 4
GRID = 7  # the feature map side the training loop's local loss expects (TrainSettings.grid)
N_OBJECTS = sum(SHARD_SIZES)
Identity = tuple[int, int]  # (global object number, view number)


# ----------------------------------------------------------------------------------------
# What each (object, view) looks like, and how to tell them apart
# ----------------------------------------------------------------------------------------

def object_image(obj: int, view: int) -> np.ndarray:
    """(H, W, 3) uint8, one colour: red 10 + object, green 100 + view, blue 50."""
    return np.broadcast_to(np.array([10 + obj, 100 + view, 50], np.uint8), (IMAGE_SIZE, IMAGE_SIZE, 3)).copy()


def object_cameras(obj: int) -> tuple[np.ndarray, np.ndarray]:
    """(V, 4, 4) view and proj matrices (float32) of one object, valid OpenGL cameras.

    View matrix: the dodecahedron camera ``view`` at distance 2 + 0.1 obj (direction = view,
    distance = object). Proj: field of view 50 + 2 obj degrees (object) and a principal
    point shifted by 0.02 (view + 1) (view).
    """
    views, projs = dodecahedron_cameras(2.0 + 0.1 * obj, 50.0 + 2.0 * obj)
    views, projs = views[:N_VIEWS].copy(), projs[:N_VIEWS].copy()
    projs[:, 0, 2] = 0.02 * (np.arange(N_VIEWS) + 1)
    return views.astype(np.float32), projs.astype(np.float32)


def object_points(obj: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) points (a fixed cloud scaled by 0.8 - 0.03 obj) and (N, 3) unit normals
    (a fixed set rotated about y by 0.2 obj rad), float32."""
    rng = np.random.default_rng(0)
    cloud = rng.normal(size=(N_STORED_POINTS, 3))
    cloud /= np.linalg.norm(cloud, axis=1).max()
    normals = rng.normal(size=(N_STORED_POINTS, 3))
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    angle = 0.2 * obj
    rotation = np.array([[np.cos(angle), 0, np.sin(angle)], [0, 1, 0], [-np.sin(angle), 0, np.cos(angle)]])
    return (cloud * (0.8 - 0.03 * obj)).astype(np.float32), (normals @ rotation.T).astype(np.float32)


@dataclass(frozen=True)
class Truth:
    """Every (object, view)'s arrays, stacked, to look up which one a returned array is."""

    keys: list[Identity]
    colours: np.ndarray  # (K, 3) mean image colour = what a pixel-mean encoder returns
    views: np.ndarray  # (K, 4, 4)
    projs: np.ndarray  # (K, 4, 4)
    points: np.ndarray  # (n_objects, N_POINTS, 3 or 6), per object

    @classmethod
    def build(cls, normals: bool = False) -> Truth:
        keys = [(obj, view) for obj in range(N_OBJECTS) for view in range(N_VIEWS)]
        cameras = [object_cameras(obj) for obj in range(N_OBJECTS)]
        clouds = []
        for obj in range(N_OBJECTS):
            points, point_normals = object_points(obj)
            clouds.append(np.concatenate([points, point_normals], axis=1) if normals else points)
        return cls(keys=keys,
                   colours=np.stack([object_image(o, v).reshape(-1, 3).mean(0) for o, v in keys]),
                   views=np.stack([cameras[o][0][v] for o, v in keys]),
                   projs=np.stack([cameras[o][1][v] for o, v in keys]),
                   points=np.stack(clouds)[:, :N_POINTS])

    @staticmethod
    def _nearest(table: np.ndarray, value: Tensor | np.ndarray, tolerance: float = 1e-4) -> int | None:
        """Row of ``table`` equal to ``value`` (up to ``tolerance``), None if there is none."""
        value = np.asarray(value, dtype=np.float64).reshape(1, *table.shape[1:])
        errors = np.abs(table - value).reshape(len(table), -1).max(axis=1)
        best = int(errors.argmin())
        return best if errors[best] <= tolerance else None

    def _key(self, table: np.ndarray, value: Tensor | np.ndarray) -> Identity | None:
        row = self._nearest(table, value)
        return None if row is None else self.keys[row]

    def of_image(self, image: Tensor) -> Identity | None:
        """(object, view) of an (H, W, 3) uint8 image."""
        return self._key(self.colours, image.reshape(-1, 3).double().mean(0))

    def of_features(self, local: Tensor, pooled: Tensor) -> Identity | None:
        """(object, view) of a pixel-mean encoder's features: local (C, g, g) and global (C,)
        must both be the colour of one image."""
        local_key = self._key(self.colours, local.double().mean(dim=(1, 2)))
        uniform = bool(torch.all(local == local[:, :1, :1]))
        global_key = self._key(self.colours, pooled)
        return local_key if (uniform and local_key == global_key) else None

    def of_view(self, matrix: Tensor) -> Identity | None:
        return self._key(self.views, matrix)

    def of_proj(self, matrix: Tensor) -> Identity | None:
        return self._key(self.projs, matrix)

    def of_points(self, points: Tensor) -> int | None:
        """Object number of an (N, 3 or 6) cloud."""
        return self._nearest(self.points, points)


def identities(sample: dict[str, Tensor], truth: Truth) -> dict[str, Identity | int | None]:
    """What each array of one dataset item (or one batch row) says it is."""
    found: dict[str, Identity | int | None] = {
        "points": truth.of_points(sample["points"]),
        "view": truth.of_view(sample["view"]),
        "proj": truth.of_proj(sample["proj"]),
    }
    if "image" in sample:
        found["image"] = truth.of_image(sample["image"])
    if "image_local" in sample:
        found["features"] = truth.of_features(sample["image_local"], sample["image_global"])
    return found


def assert_identifies(sample: dict[str, Tensor], expected: Identity, truth: Truth, where: str) -> None:
    """Every array of ``sample`` names ``expected`` (the points: its object)."""
    found = identities(sample, truth)
    wanted = {name: expected[0] if name == "points" else expected for name in found}
    assert found == wanted, f"{where}: asked for (object, view) {expected}, the arrays say {found}"


def rows(batch: dict[str, Tensor]) -> Iterator[dict[str, Tensor]]:
    """The rows of a collated batch, one dict per object."""
    for row in range(len(batch["points"])):
        yield {key: value[row] for key, value in batch.items()}


class PixelMeanEncoder(nn.Module):
    """A frozen stand-in for the 2D backbone whose features say which image they came from:
    global (B, 3) = the image's mean colour, local (B, 3, g, g) = that colour in every cell."""

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        pooled = images.float().mean(dim=(1, 2))
        return pooled[:, :, None, None].expand(-1, -1, GRID, GRID).contiguous(), pooled

    def describe(self) -> dict:
        return {"name": "pixel-mean"}


@dataclass(frozen=True)
class Corpus:
    shards: list[Path]
    features: list[Path]


def write_identified_shard(path: Path, first_object: int, count: int) -> None:
    """A shard of objects ``first_object .. first_object + count - 1`` (global numbers)."""
    with ShardWriter(path, {"suite": "wiring"}) as writer:
        for obj in range(first_object, first_object + count):
            points, normals = object_points(obj)
            views, projs = object_cameras(obj)
            images = np.stack([object_image(obj, view) for view in range(N_VIEWS)])
            writer.add(ShardObject(f"obj_{obj:03d}", "toy", "-", points, normals, images,
                                   np.ones(images.shape[:3], bool), views, projs, np.eye(4)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    folder = tmp_path_factory.mktemp("wiring")
    shards, features, first = [], [], 0
    for number, size in enumerate(SHARD_SIZES):
        shard, cache = folder / f"shard_{number:05d}.h5", folder / f"features_{number:05d}.h5"
        write_identified_shard(shard, first, size)
        # batch 7: encoder batches straddle objects (5 views) and the shard's last batch is short
        encode_shard(shard, cache, PixelMeanEncoder(), batch_size=7, dtype="float16", log=io.StringIO())
        shards.append(shard)
        features.append(cache)
        first += size
    return Corpus(shards, features)


def shard_of(obj: int) -> tuple[int, int]:
    """(shard number, row) of global object ``obj`` by construction."""
    starts = np.cumsum((0,) + SHARD_SIZES)
    shard = int(np.searchsorted(starts, obj, side="right") - 1)
    return shard, obj - int(starts[shard])


# ----------------------------------------------------------------------------------------
# The tests
# ----------------------------------------------------------------------------------------

def test_identity_checks_can_fail(corpus: Corpus) -> None:
    """Guards the guard: a sample whose view matrix, projection, points, image or features
    come from another view or object is reported, so the tests below can fail."""
    truth = Truth.build()
    cached, raw = ShardObjects(corpus.shards, corpus.features, N_POINTS), ShardObjects(corpus.shards, None, N_POINTS)
    assert_identifies(cached[(6, 2)], (6, 2), truth, "control")
    other_view, other_object = raw[(6, 3)], raw[(7, 2)]
    for key, source in (("view", other_view), ("proj", other_view), ("image", other_view), ("points", other_object),
                        ("view", other_object), ("proj", other_object), ("image", other_object)):
        mixed = dict(raw[(6, 2)], **{key: source[key]})
        with pytest.raises(AssertionError, match="the arrays say"):
            assert_identifies(mixed, (6, 2), truth, f"{key} swapped")
    for swapped in (cached[(6, 3)], cached[(7, 2)]):
        mixed = dict(cached[(6, 2)], image_local=swapped["image_local"])
        with pytest.raises(AssertionError, match="the arrays say"):
            assert_identifies(mixed, (6, 2), truth, "local features swapped")


def test_locate_maps_global_indices_across_shards_of_different_sizes(corpus: Corpus) -> None:
    """Global object index -> (shard, row) at every index, both shard boundaries included."""
    dataset = ShardObjects(corpus.shards, None, N_POINTS)
    assert len(dataset) == N_OBJECTS and dataset.n_views == N_VIEWS
    assert [dataset.locate(obj) for obj in range(N_OBJECTS)] == [shard_of(obj) for obj in range(N_OBJECTS)]
    for outside in (-1, N_OBJECTS):
        with pytest.raises(IndexError):
            dataset.locate(outside)


@pytest.mark.parametrize("normals", [False, True], ids=["xyz", "normals"])
@pytest.mark.parametrize("cached", [False, True], ids=["images", "cache"])
def test_every_object_and_view_comes_back_whole(corpus: Corpus, cached: bool, normals: bool) -> None:
    """ShardObjects[(index, view)]: image (or cached features), view matrix, projection and
    points all belong to object ``index``'s view ``view``, for every index of every shard."""
    truth = Truth.build(normals)
    dataset = ShardObjects(corpus.shards, corpus.features if cached else None, N_POINTS, normals=normals)
    for obj in range(N_OBJECTS):
        for view in range(N_VIEWS):
            sample = dataset[(obj, view)]
            assert sample["points"].shape == (N_POINTS, 6 if normals else 3)
            assert ("image_local" in sample) == cached and ("image" in sample) != cached
            assert_identifies(sample, (obj, view), truth, f"dataset[({obj}, {view})] (shard, row {shard_of(obj)})")


def test_encode_cache_rows_are_in_object_and_view_order(corpus: Corpus) -> None:
    """The cache file itself: row r, view v of ``local``/``global`` are the features of the
    shard's image [r, v] (and the ids are the shard's), for every shard."""
    truth = Truth.build()
    for number, (shard, cache) in enumerate(zip(corpus.shards, corpus.features, strict=True)):
        first = sum(SHARD_SIZES[:number])
        with h5py.File(shard, "r") as images, h5py.File(cache, "r") as features:
            assert features["local"].shape == (SHARD_SIZES[number], N_VIEWS, 3, GRID, GRID)
            assert list(features["object_ids"].asstr()[()]) == list(images["object_ids"].asstr()[()])
            assert_cache_in_order(features, first, truth, str(cache))


def assert_cache_in_order(features: h5py.File, first_object: int, truth: Truth, where: str) -> None:
    """Cache row r, view v holds the features of object ``first_object + r``, view v."""
    local, pooled = torch.from_numpy(features["local"][()]), torch.from_numpy(features["global"][()])
    found = [[truth.of_features(local[r, v], pooled[r, v]) for v in range(local.shape[1])] for r in range(len(local))]
    expected = [[(first_object + r, v) for v in range(local.shape[1])] for r in range(len(local))]
    assert found == expected, f"{where}: cache rows/views hold {found}, expected {expected}"


def test_a_cache_with_permuted_views_or_objects_is_caught(corpus: Corpus, tmp_path: Path) -> None:
    """Guards the guard: a cache whose views (or objects) were written in another order, ids
    unchanged (ShardObjects only compares ids, so it accepts it), fails the order check and
    the dataset's identity check."""
    truth = Truth.build()
    for name, (views, objects) in {"views": ([1, 0, 2, 3, 4], None), "objects": (None, [1, 0, 2, 3, 4])}.items():
        shards, caches = list(corpus.shards), list(corpus.features)
        bad = tmp_path / f"permuted_{name}.h5"
        with h5py.File(corpus.features[0], "r") as source, h5py.File(bad, "w") as target:
            for key in ("local", "global"):
                data = source[key][()]
                target[key] = data[:, views] if views is not None else data[objects]
            source.copy("object_ids", target)
            with pytest.raises(AssertionError, match="cache rows/views hold"):
                assert_cache_in_order(target, 0, truth, name)
        caches[0] = bad
        dataset = ShardObjects(shards, caches, N_POINTS)  # accepted: same object ids
        with pytest.raises(AssertionError, match="the arrays say"):
            assert_identifies(dataset[(0, 0)], (0, 0), truth, name)


def test_the_shared_fixture_cache_holds_each_views_own_features(toy_data) -> None:  # noqa: F811
    """The encode cache of the shared fixture (20 views, random images, batches of 16 that
    straddle objects) holds at [r, v] the encoder's features of shard image [r, v], and
    ShardObjects hands out that row for (index, view) in both shards."""
    shards, features = toy_data
    encoder = ToyEncoder()
    dataset, raw = ShardObjects(shards, features, n_points=32), ShardObjects(shards, None, n_points=32)
    offset = 0
    for shard, cache in zip(shards, features, strict=True):
        with h5py.File(shard, "r") as images, h5py.File(cache, "r") as stored:
            count, views = images["images"].shape[:2]
            expected_local, expected_global = encoder(torch.from_numpy(images["images"][()].reshape(-1, 28, 28, 3)))
            torch.testing.assert_close(torch.from_numpy(stored["local"][()]),
                                       expected_local.reshape(count, views, *expected_local.shape[1:]))
            torch.testing.assert_close(torch.from_numpy(stored["global"][()]),
                                       expected_global.reshape(count, views, -1))
            for row in range(count):
                view = (3 * row + offset) % views
                sample = dataset[(offset + row, view)]
                assert torch.equal(raw[(offset + row, view)]["image"], torch.from_numpy(images["images"][row, view]))
                torch.testing.assert_close(sample["image_global"], torch.from_numpy(stored["global"][row, view]))
                assert torch.equal(sample["view"], torch.from_numpy(images["view_matrices"][row, view]))
        offset += count


def test_sampler_order_depends_on_seed_and_epoch() -> None:
    """EpochSampler: the same (seed, epoch) replays the same (object, view) pairs, a
    permutation of all objects with views in range; another seed or epoch gives others."""

    def order(seed: int, epoch: int) -> list[Identity]:
        sampler = EpochSampler(N_OBJECTS, N_VIEWS, seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    first = order(7, 1)
    assert order(7, 1) == first
    assert sorted(obj for obj, _ in first) == list(range(N_OBJECTS)) and all(0 <= v < N_VIEWS for _, v in first)
    assert len({view for _, view in first}) > 1
    assert order(8, 1) != first and order(7, 2) != first


@pytest.mark.parametrize("world_size", [1, 2])
def test_loader_built_as_train_builds_it_yields_whole_rows(corpus: Corpus, world_size: int) -> None:
    """DataLoader(ShardObjects, batch_sampler=GlobalBatchSlices(EpochSampler)) as train() builds
    it, for each rank: every row of every batch is one (object, view) in all its arrays, and
    the ranks' batches, concatenated, follow the sampler's order."""
    truth = Truth.build()
    dataset = ShardObjects(corpus.shards, corpus.features, N_POINTS)
    batch_size, seed, epoch = 4, 3, 1
    sampler = EpochSampler(len(dataset), dataset.n_views, seed)
    sampler.set_epoch(epoch)
    expected = list(sampler)
    per_rank = []
    for rank in range(world_size):
        ranks = Ranks(rank, world_size)
        loader = DataLoader(dataset, batch_sampler=GlobalBatchSlices(sampler, batch_size, ranks))
        seen = []
        for step, batch in enumerate(loader):
            assert len(batch["points"]) == batch_size // world_size
            for row, sample in enumerate(rows(batch)):
                key = expected[step * batch_size + rank * (batch_size // world_size) + row]
                assert_identifies(sample, key, truth, f"rank {rank} step {step} row {row}")
                seen.append(key)
        per_rank.append(seen)
    steps = N_OBJECTS // batch_size
    rebuilt = [key for step in range(steps) for rank in range(world_size)
               for key in per_rank[rank][step * batch_size // world_size:(step + 1) * batch_size // world_size]]
    assert rebuilt == expected[:steps * batch_size]


@dataclass
class Recorder:
    """What train() handed to the model and to the local loss's projection, step by step."""

    model_inputs: list[dict[str, Tensor]]
    projections: list[dict[str, Tensor]]


def record_training(monkeypatch: pytest.MonkeyPatch, model: PicAtPoint) -> Recorder:
    """Spy on the model's forward and on the engine's project_to_cells (both keep working)."""
    recorder = Recorder([], [])
    forward, project = model.forward, engine.project_to_cells

    def spy_forward(points: Tensor, view: Tensor, image_local: Tensor, image_global: Tensor) -> dict[str, Tensor]:
        recorder.model_inputs.append({"points": points.detach().clone(), "view": view.detach().clone(),
                                      "image_local": image_local.detach().clone(),
                                      "image_global": image_global.detach().clone()})
        return forward(points, view, image_local, image_global)

    def spy_project(centres: Tensor, view: Tensor, proj: Tensor, grid: int = 7) -> tuple[Tensor, Tensor]:
        recorder.projections.append({"view": view.detach().clone(), "proj": proj.detach().clone()})
        return project(centres, view, proj, grid)

    monkeypatch.setattr(model, "forward", spy_forward)
    monkeypatch.setattr(engine, "project_to_cells", spy_project)
    return recorder


@pytest.mark.parametrize("cached, workers", [(True, 0), (False, 0), (True, 2)],
                         ids=["cache", "images+encoder", "cache+2workers"])
def test_train_feeds_each_step_whole_objects_in_sampler_order(corpus: Corpus, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch, cached: bool,
                                                              workers: int) -> None:
    """train() itself (its DataLoader, EpochSampler, GlobalBatchSlices and step_loss): in every
    step of every epoch, row k of the clouds, the view matrices and the image features the
    model gets, and of the view and projection matrices the local loss projects with, belong
    to one (object, view): the k-th pair of EpochSampler(seed, epoch). No rotation is drawn
    (rotation "none"), so the arrays arrive unchanged."""
    truth = Truth.build()
    settings = TrainSettings(epochs=2, batch_size=4, seed=11, rotation="none", num_workers=workers, grid=GRID)
    torch.manual_seed(0)
    model = PicAtPoint(ToyBackbone(), image_dim=3, variant="full", latent_dim=8, pose_dim=4)
    recorder = record_training(monkeypatch, model)
    dataset = ShardObjects(corpus.shards, corpus.features if cached else None, N_POINTS)
    history = train(model, dataset, settings, tmp_path, image_encoder=None if cached else PixelMeanEncoder(),
                    device=torch.device("cpu"), log=io.StringIO())
    assert len(history) == settings.epochs and all(np.isfinite(row["loss"]) for row in history)
    steps = N_OBJECTS // settings.batch_size
    assert len(recorder.model_inputs) == len(recorder.projections) == settings.epochs * steps
    for epoch in range(settings.epochs):
        sampler = EpochSampler(N_OBJECTS, N_VIEWS, settings.seed)
        sampler.set_epoch(epoch)
        order = list(sampler)
        for step in range(steps):
            inputs = recorder.model_inputs[epoch * steps + step]
            projection = recorder.projections[epoch * steps + step]
            for row in range(settings.batch_size):
                key = order[step * settings.batch_size + row]
                sample = {"points": inputs["points"][row], "view": projection["view"][row],
                          "proj": projection["proj"][row], "image_local": inputs["image_local"][row],
                          "image_global": inputs["image_global"][row]}
                assert_identifies(sample, key, truth, f"epoch {epoch} step {step} row {row}")
                assert truth.of_view(inputs["view"][row]) == key, f"epoch {epoch} step {step} row {row}: model's view"
