"""Pre-training on CUDA (run by benchmarks/gpu_check.sh on a GPU machine; skipped elsewhere):
the loop with pinned memory, non-blocking copies, TF32 and amp: auto (bf16), and agreement of
one fp32 step with the CPU's."""

from __future__ import annotations

import io

import pytest
import torch
from test_pretrain_engine import build, real_model, toy_data  # noqa: F401  (the shared fixture)

from picat.pretrain.data import ShardObjects
from picat.pretrain.engine import TrainSettings, step_loss, train

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda.is_available() is False")]


def one_batch(toy_data):  # noqa: F811
    shards, features = toy_data
    dataset = ShardObjects(shards, features, 64)
    batch = torch.utils.data.default_collate([dataset[(i, i % 20)] for i in range(8)])
    rotation = torch.linalg.qr(torch.randn(8, 3, 3, generator=torch.Generator().manual_seed(1)))[0]
    return batch, rotation * torch.linalg.det(rotation)[:, None, None]


@pytest.mark.parametrize("backbone_name", ["dgcnn", "pointnext"])
def test_fp32_step_on_cuda_matches_the_cpu(toy_data, backbone_name, monkeypatch):  # noqa: F811
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    batch, rotation = one_batch(toy_data)
    settings = TrainSettings(epochs=1, batch_size=8)
    cpu = float(step_loss(real_model(backbone_name), batch, rotation, settings)["loss"].detach())
    on_cuda = {key: value.cuda() for key, value in batch.items()}
    cuda = float(step_loss(real_model(backbone_name).cuda(), on_cuda, rotation.cuda(), settings)["loss"].detach())
    assert cuda == pytest.approx(cpu, rel=1e-4)


@pytest.mark.parametrize("backbone_name", ["dgcnn", "pointnext"])
def test_bf16_step_on_cuda_is_close_to_fp32(toy_data, backbone_name):  # noqa: F811
    batch, rotation = one_batch(toy_data)
    on_cuda = {key: value.cuda() for key, value in batch.items()}
    losses = {}
    for amp in ("fp32", "bf16"):
        out = step_loss(real_model(backbone_name).cuda(), on_cuda, rotation.cuda(), TrainSettings(1, 8, amp=amp))
        assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
        out["objective"].backward()
        losses[amp] = float(out["loss"].detach())
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.03)


def test_training_loop_on_cuda_with_amp_auto_and_workers(toy_data, tmp_path):  # noqa: F811
    """Two epochs on CUDA in bf16 (amp: auto), two data-loader workers with pinned memory;
    a resumed run equals an uninterrupted one on the same device."""
    shards, features = toy_data
    dataset = ShardObjects(shards, features, n_points=32)
    settings = TrainSettings(epochs=2, batch_size=4, seed=7, amp="auto", num_workers=2)
    whole = build()
    history = train(whole, dataset, settings, tmp_path / "whole", device=torch.device("cuda"), log=io.StringIO(),
                    check_every=2)
    assert len(history) == 2 and all(torch.isfinite(torch.tensor(row["loss"])) for row in history)
    assert next(whole.parameters()).device.type == "cuda"
    split = build()
    train(split, dataset, settings, tmp_path / "split", device=torch.device("cuda"), stop_after_epochs=1,
          log=io.StringIO())
    resumed = build(seed=99)
    resumed_history = train(resumed, dataset, settings, tmp_path / "split", device=torch.device("cuda"),
                            log=io.StringIO())
    assert resumed_history[-1]["loss"] == pytest.approx(history[-1]["loss"], rel=1e-3)


def test_downstream_loops_on_cuda_in_bf16_stay_close_to_the_cpu(accelerator: str = "cuda"):
    """Fine-tuning, part segmentation and scene segmentation (training and test passes) on CUDA
    with amp: auto (bf16): finite and within 5% of the CPU's float32 losses."""
    from test_partseg import dataset
    from test_precision_loops import TinyClassifier, finetune_data
    from test_semseg import TinySceneSegmenter, make_room, tiny_settings

    from picat.downstream.finetune import FinetuneSettings, finetune
    from picat.downstream.partseg import PartSegSettings, evaluate_part_segmenter, train_part_segmenter
    from picat.downstream.semseg import evaluate_scene_segmenter, train_scene_segmenter
    from picat.models.dgcnn import DGCNN, DGCNNConfig
    from picat.models.segmentation import DGCNNPartSegmenter

    cuda, cpu = torch.device(accelerator), torch.device("cpu")
    train_x, train_y, test_x, test_y = finetune_data()
    runs = {}
    for device, amp in ((cpu, "fp32"), (cuda, "auto")):
        torch.manual_seed(0)
        result = finetune(TinyClassifier(), train_x, train_y, test_x, test_y,
                          FinetuneSettings(epochs=2, batch_size=5, n_points=32), seed=0, device=device,
                          log=io.StringIO(), amp=amp)
        runs[amp] = [row["train_loss"] for row in result["history"]]
    assert runs["auto"] == pytest.approx(runs["fp32"], rel=0.05)

    train, test = dataset([0, 1, 0, 1], 64, seed=4), dataset([0, 1], 64, seed=5)
    settings = PartSegSettings(epochs=1, batch_size=2, n_points=48, optimizer="adamw", lr=0.001)
    for device, amp in ((cpu, "fp32"), (cuda, "auto")):
        torch.manual_seed(0)
        model = DGCNNPartSegmenter(DGCNN(DGCNNConfig(k=4, emb_dims=16)))
        history = train_part_segmenter(model, train, settings, seed=3, device=device, log=io.StringIO(), amp=amp)
        scores = evaluate_part_segmenter(model, test, settings, seed=3, device=device, amp=amp)
        runs[amp] = [row["train_loss"] for row in history]
        assert 0 <= scores["instance_miou"] <= 100
    assert runs["auto"] == pytest.approx(runs["fp32"], rel=0.05)

    rooms = [make_room("Area_1_office_1", 1, seed=6), make_room("Area_2_office_1", 2, seed=7)]
    for device, amp in ((cpu, "fp32"), (cuda, "auto")):
        torch.manual_seed(0)
        model = TinySceneSegmenter()
        history = train_scene_segmenter(model, rooms, tiny_settings(epochs=2), seed=1, device=device,
                                        log=io.StringIO(), amp=amp)
        scores = evaluate_scene_segmenter(model, [make_room("Area_5_office_1", 5, seed=8)], tiny_settings(epochs=2),
                                          seed=1, device=device, log=io.StringIO(), amp=amp)
        runs[amp] = [row["train_loss"] for row in history]
        assert 0 <= scores["overall_accuracy"] <= 100
    assert runs["auto"] == pytest.approx(runs["fp32"], rel=0.05)
