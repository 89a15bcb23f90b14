"""The training loop on tiny shards with a toy backbone and a toy frozen image encoder:
resume equals an uninterrupted run, a non-finite loss aborts, cache equals on-the-fly."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from picat.geometry import dodecahedron_cameras
from picat.pretrain.data import EpochSampler, ShardObjects
from picat.pretrain.engine import NonFiniteLossError, TrainSettings, step_loss, train
from picat.pretrain.model import PicAtPoint
from picat.shards import ShardObject, ShardWriter
from picat.stages.encode import encode_shard
from picat.training_log import read_log


class ToyBackbone(nn.Module):
    """Per-point MLP; local = per-point features, global = max pool."""

    global_dim = local_dim = 16

    def __init__(self, in_channels: int = 3, poison: bool = False) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv1d(in_channels, 16, 1), nn.ReLU(), nn.Conv1d(16, 16, 1))
        self.poison = poison

    def forward_features(self, points):
        local = self.mlp(points.transpose(1, 2))
        if self.poison:
            local = local * float("nan")
        return local.max(dim=2).values, local, points[..., :3]


class ToyEncoder(nn.Module):
    """A frozen stand-in for the 2D backbone: uint8 (B, H, W, 3) -> (B, 8, 7, 7), (B, 8)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(123)
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.requires_grad_(False)

    def forward(self, images):
        x = images.permute(0, 3, 1, 2).float() / 255.0
        local = nn.functional.adaptive_avg_pool2d(self.conv(x), 7)
        return local, local.mean(dim=(2, 3))

    def describe(self) -> dict:
        return {"name": "toy"}


def write_toy_shard(path: Path, n_objects: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    views, projs = dodecahedron_cameras(2.5, 50.0)
    with ShardWriter(path, {"suite": "test"}) as writer:
        for index in range(n_objects):
            points = rng.normal(size=(64, 3)) * [0.5, 0.3, 0.2]
            points /= max(1.0, np.linalg.norm(points, axis=1).max())
            normals = rng.normal(size=(64, 3))
            normals /= np.linalg.norm(normals, axis=1, keepdims=True)
            writer.add(ShardObject(f"obj_{seed}_{index:03d}", "toy", "-", points.astype(np.float32),
                                   normals.astype(np.float32),
                                   rng.integers(0, 256, (20, 28, 28, 3), dtype=np.uint8), np.ones((20, 28, 28), bool),
                                   views, projs, np.eye(4)))


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrain")
    shards = [folder / "shard_00000.h5", folder / "shard_00001.h5"]
    write_toy_shard(shards[0], 10, 0)
    write_toy_shard(shards[1], 7, 1)
    features = [folder / "f0.h5", folder / "f1.h5"]
    for shard, feature in zip(shards, features, strict=True):
        encode_shard(shard, feature, ToyEncoder(), batch_size=16, dtype="float32", log=io.StringIO())
    return shards, features


def build(variant="full", poison=False, seed=0):
    torch.manual_seed(seed)
    return PicAtPoint(ToyBackbone(6 if variant == "normals" else 3, poison), image_dim=8, variant=variant,
                      latent_dim=12, pose_dim=4)


SETTINGS = TrainSettings(epochs=3, batch_size=4, seed=7)


def test_dataset_spans_shards_and_sampler_is_deterministic(toy_data):
    shards, features = toy_data
    dataset = ShardObjects(shards, features, n_points=32)
    assert len(dataset) == 17 and dataset.locate(12) == (1, 2)
    item = dataset[(12, 5)]
    assert item["points"].shape == (32, 3) and item["image_local"].shape == (8, 7, 7) and item["view"].shape == (4, 4)
    sampler = EpochSampler(17, 20, seed=3)
    sampler.set_epoch(2)
    first = list(sampler)
    sampler.set_epoch(2)
    assert list(sampler) == first and sorted(i for i, _ in first) == list(range(17))
    sampler.set_epoch(3)
    assert list(sampler) != first


def test_resumed_run_equals_uninterrupted_run(toy_data, tmp_path):
    shards, features = toy_data
    dataset = ShardObjects(shards, features, n_points=32)
    whole = build()
    history = train(whole, dataset, SETTINGS, tmp_path / "whole", device=torch.device("cpu"), log=io.StringIO())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    interrupted = build()
    train(interrupted, dataset, SETTINGS, tmp_path / "split", device=torch.device("cpu"), stop_after_epochs=1,
          log=io.StringIO())
    resumed = build(seed=99)  # a fresh process: different init, everything comes from resume.pt
    log = io.StringIO()
    resumed_history = train(resumed, dataset, SETTINGS, tmp_path / "split", device=torch.device("cpu"), log=log)
    assert "resuming" in log.getvalue() and len(resumed_history) == 3
    for name, tensor in whole.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    assert resumed_history[-1]["loss"] == history[-1]["loss"]
    # The training log (picat.training_log) holds each epoch once, as the uninterrupted run's (timings aside).
    timing = ("seconds", "objects_per_s")

    def log_rows(folder: Path) -> list[dict]:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in read_log(folder / "log.csv")
                if row["metric"] not in timing]

    assert log_rows(tmp_path / "split") == log_rows(tmp_path / "whole")
    assert [row["epoch"] for row in log_rows(tmp_path / "split") if row["metric"] == "loss"] == [1, 2, 3]


def test_non_finite_loss_aborts_with_a_clear_message(toy_data, tmp_path):
    shards, features = toy_data
    with pytest.raises(NonFiniteLossError, match="non-finite loss at epoch 1, step 1"):
        train(build(poison=True), ShardObjects(shards, features, 32), SETTINGS, tmp_path, device=torch.device("cpu"),
              log=io.StringIO())


@pytest.mark.parametrize("variant", ["full", "no_local", "no_global", "no_pose", "normals"])
def test_cached_features_give_the_same_loss_as_encoding_on_the_fly(toy_data, variant):
    shards, features = toy_data
    normals = variant == "normals"
    cached, raw = ShardObjects(shards, features, 32, normals), ShardObjects(shards, None, 32, normals)
    items = [(i, (3 * i) % 20) for i in range(0, 17, 2)]
    collate = torch.utils.data.default_collate
    batch_cached, batch_raw = collate([cached[i] for i in items]), collate([raw[i] for i in items])
    model = build(variant).eval()
    rotation = torch.eye(3).expand(len(items), 3, 3)
    with torch.no_grad():
        a = step_loss(model, batch_cached, rotation, SETTINGS)
        b = step_loss(model, batch_raw, rotation, SETTINGS, image_encoder=ToyEncoder())
    for key in ("loss", "local", "global"):
        assert torch.allclose(a[key], b[key], atol=1e-5), key
    assert a["loss"] > 0
    assert (a["local"] > 0) == (variant != "no_local") and (a["global"] > 0) == (variant != "no_global")


def test_cache_with_other_objects_is_refused(toy_data):
    shards, features = toy_data
    with pytest.raises(ValueError, match="object ids differ"):
        ShardObjects(shards, features[::-1], 32)


def test_progress_bar_and_epoch_lines_reach_the_log(toy_data, tmp_path):
    shards, features = toy_data
    log = io.StringIO()
    train(build(), ShardObjects(shards, features, 32), TrainSettings(epochs=1, batch_size=4, seed=7), tmp_path,
          device=torch.device("cpu"), log=log)
    text = log.getvalue()
    # tqdm's final refresh shows every batch of the epoch (17 objects, batch 4, drop_last -> 4 batches).
    assert "[pretrain] epoch 1/1: 100%" in text and "4/4" in text, text
    assert "[pretrain] epoch 1/1 loss" in text


def test_tensorboard_gets_the_epoch_scalars_when_installed(toy_data, tmp_path):
    pytest.importorskip("tensorboard", reason="TensorBoard logging is optional; the package is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    shards, features = toy_data
    history = train(build(), ShardObjects(shards, features, 32), TrainSettings(epochs=2, batch_size=4, seed=7),
                    tmp_path, device=torch.device("cpu"), log=io.StringIO())
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = events.Tags()["scalars"]
    for tag in ("train/loss", "train/local", "train/global", "train/lr", "train/lr_image", "train/objects_per_s",
                "step/loss"):
        assert tag in scalars, (tag, scalars)
    # At the global step (4 batches per epoch), the x axis of every loop's curves.
    logged = [(event.step, event.value) for event in events.Scalars("train/loss")]
    assert [step for step, _ in logged] == [4, 8]
    assert logged[1][1] == pytest.approx(history[1]["loss"], rel=1e-6)


def real_model(backbone_name: str) -> PicAtPoint:
    from picat.models.factory import build_point_backbone

    torch.manual_seed(0)
    options = {"k": 6, "emb_dims": 32, "local_centres": 16} if backbone_name == "dgcnn" else {"width": 8, "nsample": 8}
    return PicAtPoint(build_point_backbone(backbone_name, options), image_dim=8, variant="full", latent_dim=16,
                      pose_dim=8)


@pytest.mark.parametrize("backbone_name", ["dgcnn", "pointnext"])
def test_bf16_autocast_step_on_cpu_is_finite_and_close_to_fp32(toy_data, backbone_name):
    """amp: bf16 runs on the CPU too: the forward in bfloat16, the losses in float32; one step's
    loss is finite and within 3% of the float32 step's, and the gradients point the same way
    (DGCNN's feature-space kNN in bf16 reordered the neighbours: cosine 0.65 before it was
    kept in float32)."""
    shards, features = toy_data
    dataset = ShardObjects(shards, features, 64)
    batch = torch.utils.data.default_collate([dataset[(i, i % 20)] for i in range(8)])
    rotation = torch.linalg.qr(torch.randn(8, 3, 3, generator=torch.Generator().manual_seed(1)))[0]
    rotation = rotation * torch.linalg.det(rotation)[:, None, None]  # proper rotations
    results = {}
    for amp in ("fp32", "bf16"):
        model = real_model(backbone_name)
        losses = step_loss(model, batch, rotation, TrainSettings(epochs=1, batch_size=8, amp=amp))
        assert losses["loss"].dtype == torch.float32 and torch.isfinite(losses["loss"])
        losses["objective"].backward()
        grads = torch.cat([p.grad.flatten() for p in model.point_parameters() if p.grad is not None])
        results[amp] = (float(losses["loss"].detach()), grads)
    (fp32, grad32), (bf16, grad16) = results["fp32"], results["bf16"]
    assert abs(bf16 - fp32) < 0.03 * abs(fp32), (fp32, bf16)
    cosine = float(torch.nn.functional.cosine_similarity(grad32, grad16, dim=0))
    assert cosine > 0.8, cosine


def test_amp_auto_is_fp32_on_the_cpu(toy_data, tmp_path):
    """amp: auto means bf16 on CUDA only: on the CPU a run is bit-identical to an fp32 run."""
    shards, features = toy_data
    dataset = ShardObjects(shards, features, n_points=32)
    runs = {}
    for amp in ("fp32", "auto"):
        model = build()
        settings = TrainSettings(epochs=1, batch_size=4, seed=7, amp=amp)
        runs[amp] = (train(model, dataset, settings, tmp_path / amp, device=torch.device("cpu"), log=io.StringIO()),
                     model.state_dict())
    assert runs["fp32"][0][0]["loss"] == runs["auto"][0][0]["loss"]
    for name, tensor in runs["fp32"][1].items():
        assert torch.equal(tensor, runs["auto"][1][name]), name


def test_non_finite_loss_between_checks_is_caught_at_the_epoch_end(toy_data, tmp_path):
    """The non-finite check reads the device every check_every steps and at the end of the
    epoch; a NaN from the first step is still reported with its step number."""
    shards, features = toy_data
    with pytest.raises(NonFiniteLossError, match="non-finite loss at epoch 1, step 1"):
        train(build(poison=True), ShardObjects(shards, features, 32), SETTINGS, tmp_path, device=torch.device("cpu"),
              log=io.StringIO(), check_every=1000)


def hand_local_loss(model: PicAtPoint, batch: dict, rotation: torch.Tensor, visible: bool) -> dict:
    """The local loss computed here from the model's outputs: every centre in the image, or
    only those :func:`visible_centres` keeps."""
    from picat.pretrain.correspondence import project_to_cells, rotate_with_cameras
    from picat.pretrain.losses import local_infonce
    from picat.pretrain.visibility import visible_centres

    points, view = rotate_with_cameras(batch["points"], batch["view"], rotation)
    out = model(points, view, batch["image_local"], batch["image_global"])
    cells, valid = project_to_cells(out["centres"], view, batch["proj"])
    kept = valid & visible_centres(out["centres"], points, view, batch["proj"]) if visible else valid
    return {"local": local_infonce(out["z_local"], out["q_local"], cells, kept, SETTINGS.temperature),
            "valid": valid, "kept": kept}


def occlusion_batch(toy_data) -> tuple[dict, torch.Tensor]:
    from picat.pretrain.correspondence import random_rotations

    shards, features = toy_data
    dataset = ShardObjects(shards, features, 32)
    items = [(i, (7 * i) % 20) for i in range(0, 17, 2)]
    batch = torch.utils.data.default_collate([dataset[i] for i in items])
    return batch, random_rotations(len(items), "so3", generator=torch.Generator().manual_seed(4))


def test_occlusion_visible_masks_the_local_loss_exactly_as_the_visibility_test_says(toy_data):
    from dataclasses import replace

    batch, rotation = occlusion_batch(toy_data)
    model = build().eval()
    with torch.no_grad():
        losses = step_loss(model, batch, rotation, replace(SETTINGS, occlusion="visible"))
        everything = step_loss(model, batch, rotation, SETTINGS)
        hand = hand_local_loss(model, batch, rotation, visible=True)
    hidden = hand["valid"] & ~hand["kept"]
    assert 0 < int(hidden.sum()) < int(hand["valid"].sum())  # the toy clouds hide some centres, not all
    assert torch.equal(losses["local"], hand["local"])
    assert not torch.equal(losses["local"], everything["local"])
    assert float(losses["valid_fraction"]) == float(hand["valid"].float().mean())  # still: inside the image
    assert float(losses["kept_fraction"]) == float(hand["kept"].float().mean())
    assert torch.equal(losses["global"], everything["global"])


def test_occlusion_all_leaves_the_loss_as_it_was(toy_data):
    batch, rotation = occlusion_batch(toy_data)
    model = build().eval()
    with torch.no_grad():
        losses = step_loss(model, batch, rotation, SETTINGS)
        hand = hand_local_loss(model, batch, rotation, visible=False)
    assert SETTINGS.occlusion == "all"
    assert torch.equal(losses["local"], hand["local"])
    assert float(losses["kept_fraction"]) == float(losses["valid_fraction"]) == float(hand["valid"].float().mean())


def test_occlusion_visible_trains_and_records_the_setting(toy_data, tmp_path):
    from dataclasses import replace

    shards, features = toy_data
    settings = replace(SETTINGS, epochs=1, occlusion="visible")
    history = train(build(), ShardObjects(shards, features, 32), settings, tmp_path, device=torch.device("cpu"),
                    log=io.StringIO())
    assert 0 < history[0]["kept_fraction"] < history[0]["valid_fraction"] and np.isfinite(history[0]["local"])
    assert torch.load(tmp_path / "resume.pt", weights_only=False)["settings"]["occlusion"] == "visible"
    # A resume state from before the option existed was trained on every centre: it resumes
    # an `all` run and is refused for a `visible` one.
    state = torch.load(tmp_path / "resume.pt", weights_only=False)
    del state["settings"]["occlusion"]
    torch.save(state, tmp_path / "resume.pt")
    with pytest.raises(RuntimeError, match="other settings"):
        train(build(), ShardObjects(shards, features, 32), settings, tmp_path, device=torch.device("cpu"),
              log=io.StringIO())
    log = io.StringIO()
    train(build(), ShardObjects(shards, features, 32), replace(settings, occlusion="all"), tmp_path,
          device=torch.device("cpu"), log=log)
    assert "resuming" in log.getvalue()


def test_unknown_occlusion_mode_is_refused():
    with pytest.raises(ValueError, match="occlusion must be one of all, visible, got 'hidden'"):
        TrainSettings(epochs=1, occlusion="hidden")
