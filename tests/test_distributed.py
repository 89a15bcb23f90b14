"""Data-parallel pre-training on the CPU (gloo, 2 processes) equals a single process on the
same global batch: the loss, the DDP-averaged gradients, a 2-epoch training run, resuming
from a single-process checkpoint; and `picat pretrain --nproc 2` (torchrun) end to end."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_pretrain_engine import toy_data  # noqa: F401  (the shared fixture)
from test_pretrain_stage import SETTINGS as STAGE_SETTINGS
from torch import nn

import picat
from picat.cli import _pretrain_argv, build_parser
from picat.models.dgcnn import DGCNN, DGCNNConfig
from picat.pretrain.data import EpochSampler, ShardObjects
from picat.pretrain.distributed import GlobalBatchSlices, Ranks, launcher_command, rank_slice
from picat.pretrain.engine import TrainSettings, batch_rotations, data_parallel, step_loss, train
from picat.pretrain.model import PicAtPoint
from picat.stages.pretrain import run_pretraining
from picat.training_log import read_log

WORLD = 2
SETTINGS = TrainSettings(epochs=2, batch_size=4, seed=7)
STEP_VARIANTS = ("full", "no_local", "no_global")
REPO = Path(__file__).resolve().parent.parent


class ToyBackbone(nn.Module):
    """Per-point MLP, max-pooled. Unlike the engine tests' toy, no parameter has an
    identically zero gradient (a bias right before BatchNorm-normalised heads would): Adam
    turns such float-noise gradients into full-size steps of random sign, which would hide
    whether the runs agree."""

    global_dim = local_dim = 16

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv1d(in_channels, 16, 1), nn.LeakyReLU(0.2), nn.Conv1d(16, 16, 1, bias=False))

    def forward_features(self, points):
        local = self.mlp(points.transpose(1, 2))
        return local.max(dim=2).values, local, points[..., :3]


def build(variant: str = "full", seed: int = 0, backbone: str = "toy") -> PicAtPoint:
    torch.manual_seed(seed)
    # A tiny DGCNN checks that EdgeConv's own batch statistics are those of the global batch.
    points = ToyBackbone() if backbone == "toy" else DGCNN(DGCNNConfig(k=4, emb_dims=16, edge_channels=(8, 8)))
    return PicAtPoint(points, image_dim=8, variant=variant, latent_dim=12, pose_dim=4)


def first_batch(dataset: ShardObjects, settings: TrainSettings, ranks: Ranks) -> tuple[dict, torch.Tensor]:
    """This rank's slice of the first global batch of epoch 0, with its rotations (as `train` draws them)."""
    sampler = EpochSampler(len(dataset), dataset.n_views, settings.seed)
    items = next(iter(GlobalBatchSlices(sampler, settings.batch_size, ranks)))
    batch = torch.utils.data.default_collate([dataset[item] for item in items])
    return batch, batch_rotations(settings, 0, 0, len(items), ranks)


def one_step(variant: str, dataset: ShardObjects, ranks: Ranks, backbone: str = "toy",
             settings: TrainSettings = SETTINGS) -> dict:
    """One forward/backward of a fresh toy model; the losses and each parameter's gradient."""
    model = build(variant, backbone=backbone)
    net = data_parallel(model, ranks, torch.device("cpu"))
    batch, rotation = first_batch(dataset, settings, ranks)
    losses = step_loss(net, batch, rotation, settings, ranks=ranks)
    losses["objective"].backward()
    return {"losses": {key: float(value.detach()) for key, value in losses.items() if key != "objective"},
            "grads": {name: p.grad.clone() for name, p in model.named_parameters()}}


def _rank_main(rank: int, shards: list[Path], features: list[Path], folder: Path) -> None:
    """One of the WORLD processes: the step checks and two training runs; results go to a file."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder / 'rendezvous'}", rank=rank, world_size=WORLD)
    try:
        ranks = Ranks(rank, WORLD, rank)
        dataset = ShardObjects(shards, features, n_points=32)
        results: dict = {"steps": {variant: one_step(variant, dataset, ranks) for variant in STEP_VARIANTS}}
        results["dgcnn_step"] = one_step("full", dataset, ranks, backbone="dgcnn")
        results["visible_step"] = one_step("full", dataset, ranks, settings=replace(SETTINGS, occlusion="visible"))
        # A fresh run, each rank given its own folder: only rank 0's may receive files.
        model = build()
        results["history"] = train(model, dataset, SETTINGS, folder / f"fresh_rank{rank}", device=torch.device("cpu"),
                                   log=io.StringIO(), ranks=ranks)
        results["state"] = model.state_dict()
        # Both ranks resume the single-process run that stopped after epoch 1.
        resumed, log = build(seed=99), io.StringIO()
        results["resumed_history"] = train(resumed, dataset, SETTINGS, folder / "resume", device=torch.device("cpu"),
                                           log=log, ranks=ranks)
        results["resumed_state"], results["resumed_log"] = resumed.state_dict(), log.getvalue()
        torch.save(results, folder / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def assert_close_gradients(actual: dict, expected: dict) -> None:
    """Equal up to float32 summation order: within 5e-5 of each tensor's largest entry.

    (The single-process float32 gradient itself is 1.2e-5 of its largest entry away from the
    float64 one on the image head's first layer: the tolerance is float32 noise, not more.)
    """
    assert actual.keys() == expected.keys()
    for name, tensor in expected.items():
        error = (actual[name].double() - tensor.double()).abs().max()
        assert error <= 5e-5 * tensor.abs().max() + 1e-7, (name, float(error), float(tensor.abs().max()))


def assert_close_weights(actual: dict, expected: dict, steps: int) -> None:
    """Trained weights agree up to Adam's amplification of float noise.

    Adam normalises each step, so an entry whose gradient is at float-noise level (a nearly
    dead ReLU channel) may move by up to lr per step in either direction: every entry stays
    within that bound and 99% of them agree to 1e-4.
    """
    assert actual.keys() == expected.keys()
    close, total = 0, 0
    for name, tensor in expected.items():
        error = (actual[name].double() - tensor.double()).abs()
        assert float(error.max()) <= 2 * steps * SETTINGS.lr_point, (name, float(error.max()))
        close += int((error <= 1e-4 * (1 + tensor.double().abs())).sum())
        total += error.numel()
    assert close >= 0.99 * total, f"{total - close} of {total} entries differ by more than 1e-4"


@pytest.fixture(scope="module")
def two_ranks(toy_data, tmp_path_factory):  # noqa: F811
    """Run _rank_main in two spawned processes, after a single-process run stopped at epoch 1."""
    shards, features = toy_data
    folder = tmp_path_factory.mktemp("ddp")
    train(build(), ShardObjects(shards, features, 32), SETTINGS, folder / "resume", device=torch.device("cpu"),
          stop_after_epochs=1, log=io.StringIO())
    started = time.time()
    mp.spawn(_rank_main, args=(shards, features, folder), nprocs=WORLD, join=True)
    print(f"2-process run: {time.time() - started:.1f} s")
    return folder, [torch.load(folder / f"rank{rank}.pt", weights_only=False) for rank in range(WORLD)]


@pytest.mark.parametrize("variant", STEP_VARIANTS)
def test_one_step_loss_and_gradients_equal_a_single_process(toy_data, two_ranks, variant):  # noqa: F811
    shards, features = toy_data
    single = one_step(variant, ShardObjects(shards, features, 32), Ranks())
    for rank, results in enumerate(two_ranks[1]):
        step = results["steps"][variant]
        for key in ("loss", "local", "global", "valid_fraction"):
            assert step["losses"][key] == pytest.approx(single["losses"][key], rel=1e-5, abs=1e-6), (rank, key)
        # After DDP's averaging every rank holds the single-process gradient of the global batch.
        assert_close_gradients(step["grads"], single["grads"])
    assert single["losses"]["loss"] > 0


def test_dgcnn_edge_statistics_are_those_of_the_global_batch(toy_data, two_ranks):  # noqa: F811
    shards, features = toy_data
    single = one_step("full", ShardObjects(shards, features, 32), Ranks(), backbone="dgcnn")
    for results in two_ranks[1]:
        step = results["dgcnn_step"]
        assert step["losses"]["loss"] == pytest.approx(single["losses"]["loss"], rel=1e-5, abs=1e-6)
        assert_close_gradients(step["grads"], single["grads"])


def test_visible_centres_only_step_equals_a_single_process(toy_data, two_ranks):  # noqa: F811
    """occlusion: visible, where each rank judges its own objects' centres: the same losses,
    kept fraction and gradients as one process on the global batch."""
    shards, features = toy_data
    settings = replace(SETTINGS, occlusion="visible")
    single = one_step("full", ShardObjects(shards, features, 32), Ranks(), settings=settings)
    everything = one_step("full", ShardObjects(shards, features, 32), Ranks())
    assert single["losses"]["kept_fraction"] < single["losses"]["valid_fraction"]  # some centres are hidden
    assert single["losses"]["local"] != everything["losses"]["local"]
    for rank, results in enumerate(two_ranks[1]):
        step = results["visible_step"]
        for key in ("loss", "local", "global", "valid_fraction", "kept_fraction"):
            assert step["losses"][key] == pytest.approx(single["losses"][key], rel=1e-5, abs=1e-6), (rank, key)
        assert_close_gradients(step["grads"], single["grads"])


def test_training_run_matches_and_only_rank_0_writes(toy_data, two_ranks, tmp_path):  # noqa: F811
    shards, features = toy_data
    folder, results = two_ranks
    model = build()
    history = train(model, ShardObjects(shards, features, 32), SETTINGS, tmp_path, device=torch.device("cpu"),
                    log=io.StringIO())
    for rank in range(WORLD):
        assert [row["epoch"] for row in results[rank]["history"]] == [1, 2]
        for ours, theirs in zip(results[rank]["history"], history, strict=True):
            for key in ("loss", "local", "global", "valid_fraction", "kept_fraction"):
                assert ours[key] == pytest.approx(theirs[key], rel=1e-5), (rank, key)
        assert_close_weights(results[rank]["state"], model.state_dict(), steps=2 * 4)
    assert (folder / "fresh_rank0" / "resume.pt").is_file()
    assert not (folder / "fresh_rank1" / "resume.pt").exists()


def test_both_ranks_resume_a_single_process_checkpoint(toy_data, two_ranks, tmp_path):  # noqa: F811
    shards, features = toy_data
    _, results = two_ranks
    whole = build()
    history = train(whole, ShardObjects(shards, features, 32), SETTINGS, tmp_path, device=torch.device("cpu"),
                    log=io.StringIO())
    assert "resuming" in results[0]["resumed_log"] and results[1]["resumed_log"] == ""  # rank 1 stays quiet
    for rank in range(WORLD):
        assert results[rank]["resumed_history"][-1]["loss"] == pytest.approx(history[-1]["loss"], rel=1e-5)
        assert_close_weights(results[rank]["resumed_state"], whole.state_dict(), steps=4)


@pytest.mark.parametrize("n_objects, batch, world", [(17, 4, 2), (3, 2, 2), (23, 6, 3), (10, 5, 1)])
def test_rank_slices_rebuild_the_single_process_batches(n_objects, batch, world):
    sampler = EpochSampler(n_objects, 20, seed=1)
    sampler.set_epoch(4)
    single = list(GlobalBatchSlices(sampler, batch))
    per_rank = [list(GlobalBatchSlices(sampler, batch, Ranks(rank, world))) for rank in range(world)]
    # Same step count on every rank (else a rank would wait forever), and in rank order the
    # slices are the single-process batch.
    assert all(len(steps) == len(single) == n_objects // batch for steps in per_rank)
    for step, expected in enumerate(single):
        assert [item for rank in range(world) for item in per_rank[rank][step]] == expected
    rotations = torch.arange(batch * 9.0).view(batch, 3, 3)
    assert torch.equal(torch.cat([rank_slice(rotations, Ranks(rank, world)) for rank in range(world)]), rotations)


def test_global_batch_not_divisible_by_the_processes_is_refused(toy_data, tmp_path):  # noqa: F811
    shards, features = toy_data
    with pytest.raises(ValueError, match="batch_size=5 .* not divisible by the 2 processes"):
        train(build(), ShardObjects(shards, features, 32), replace(SETTINGS, batch_size=5), tmp_path,
              device=torch.device("cpu"), log=io.StringIO(), ranks=Ranks(0, 2, 0))


def test_nproc_relaunches_the_same_command_under_torchrun():
    argv = ["pretrain", "--shards", "a.h5", "b.h5", "--features", "fa.h5", "fb.h5", "--out", "run/checkpoint.pt",
            "--backbone", "dgcnn", "--variant", "full", "--seed", "3", "--settings", '{"epochs": 2}',
            "--threads", "4", "--stop-after-epochs", "1", "--nproc", "2"]
    args = build_parser().parse_args(argv)
    command = launcher_command(_pretrain_argv(args), args.nproc, executable="python")
    assert command[:6] == ["python", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m"]
    again = build_parser().parse_args(command[7:])
    assert again.nproc == 1 and vars(again) | {"nproc": 2} == vars(args)


def test_torchrun_with_two_processes_writes_a_loadable_checkpoint(toy_data, tmp_path):  # noqa: F811
    """`picat pretrain --nproc 2` (torchrun, gloo) for one epoch of PointNeXt; its epoch loss
    equals a single process's.

    The learning rates are 0 so that every step's loss tests the forward pass and the
    gathered negatives alone: with Adam, parameters whose gradient is float noise (zero in
    exact arithmetic) take full-size steps of random sign, and after a few steps the two runs'
    losses drift apart by ~4e-4 relative (the gradients themselves are compared in
    test_one_step_loss_and_gradients_equal_a_single_process).
    """
    shards, features = toy_data
    settings = {**STAGE_SETTINGS, "epochs": 1, "lr_point": 0.0, "lr_image": 0.0}
    output = tmp_path / "ddp" / "checkpoint.pt"
    command = [sys.executable, "-m", "picat", "pretrain", "--shards", *map(str, shards), "--features",
               *map(str, features), "--out", str(output), "--backbone", "pointnext", "--variant", "full", "--seed", "3",
               "--settings", json.dumps(settings), "--suite", "test", "--device", "cpu", "--threads", "2",
               "--nproc", "2"]
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=REPO)
    print(f"torchrun --nproc_per_node 2, 1 epoch: {time.time() - started:.1f} s")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 processes x 2 objects = global batch 4" in done.stderr, done.stderr
    assert done.stderr.count("[pretrain] epoch 1/1 loss") == 1  # rank 0 alone reports
    model = picat.load_backbone(output)
    assert model.picat_metadata["seed"] == 3 and not (output.parent / "resume.pt").exists()
    rows = {row["metric"]: row for row in read_log(output.parent / "log.csv")}
    assert {row["epoch"] for row in rows.values()} == {1}
    single = tmp_path / "single" / "checkpoint.pt"
    run_pretraining(shards, features, single, "pointnext", "full", 3, settings, "y", "test", device="cpu",
                    log=io.StringIO())
    expected = torch.load(single, weights_only=False)["metadata"]["history"][0]["loss"]
    assert rows["loss"]["value"] == pytest.approx(expected, rel=1e-5)


def test_cuda_ranks_get_sync_batch_norm_except_inside_edgeconv():
    """On CUDA the plain BatchNorm layers become nn.SyncBatchNorm, but EdgeConv's ``bn`` (whose
    statistics EdgeConv computes itself through ``sum_across_ranks``) stays a GlobalBatchNorm;
    on the CPU every layer is a GlobalBatchNorm. Parameters and keys are unchanged."""
    from picat.pretrain.distributed import GlobalBatchNorm, use_global_batch_norm

    for device, plain_kind in ((torch.device("cuda"), nn.SyncBatchNorm), (torch.device("cpu"), GlobalBatchNorm)):
        model = DGCNN(DGCNNConfig(k=4, emb_dims=16, local_centres=5))
        before = {key: value.data_ptr() for key, value in model.state_dict().items()}
        use_global_batch_norm(model, Ranks(rank=0, world_size=2), device)
        assert {key: value.data_ptr() for key, value in model.state_dict().items()} == before
        kinds = {name: type(module) for name, module in model.named_modules()
                 if isinstance(module, nn.modules.batchnorm._BatchNorm)}
        for name, kind in kinds.items():
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            expected = GlobalBatchNorm if getattr(parent, "owns_batch_statistics", False) else plain_kind
            assert kind is expected, (device, name, kind)
        assert GlobalBatchNorm in kinds.values() and plain_kind in kinds.values()  # both kinds are present
