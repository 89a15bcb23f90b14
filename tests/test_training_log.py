"""The training log shared by every loop (picat.training_log): the CSV's long format, a resumed
log that never repeats rows, TensorBoard's purge on resume, the settings block, and Weights &
Biases in offline mode (no account) through a real segmentation run."""

from __future__ import annotations

import csv
import io

import pytest
import torch
from test_partseg import TinyPartSegmenter, dataset

from picat.downstream.partseg import PartSegSettings, run_part_segmentation
from picat.training_log import COLUMNS, CSV_FILE, LoggingSettings, TrainingLog, WandbSettings, read_log

NO_SINKS = {"tensorboard": False}


def test_rows_are_long_and_read_back_exactly(tmp_path):
    log = TrainingLog(tmp_path, "finetune", NO_SINKS)
    log.start()
    assert read_log(tmp_path / CSV_FILE) == []  # a header from the start
    log.record(1, {"train": {"loss": 1 / 3, "accuracy": 50.0}, "val": {"accuracy": 62.5}}, step=4, lr=0.002,
               seconds=1.25)
    log.record(2, {"train": {"loss": 0.1, "accuracy": 75.0}}, step=8, lr=0.001, seconds=1.5)
    log.record(1, {"test": {"overall_accuracy": 87.5}}, seconds=0.5)  # the tested epoch; step: the last one
    log.close()
    with open(tmp_path / CSV_FILE, newline="") as handle:
        assert tuple(next(csv.reader(handle))) == COLUMNS
    rows = read_log(tmp_path / CSV_FILE)
    assert rows == log.rows
    assert [(r["epoch"], r["step"], r["split"], r["metric"]) for r in rows] == [
        (1, 4, "train", "loss"), (1, 4, "train", "accuracy"), (1, 4, "val", "accuracy"),
        (2, 8, "train", "loss"), (2, 8, "train", "accuracy"), (1, 8, "test", "overall_accuracy")]
    assert rows[0]["value"] == 1 / 3 and rows[0]["lr"] == 0.002 and rows[0]["seconds"] == 1.25  # exact floats
    assert rows[-1]["lr"] is None and rows[-1]["seconds"] == 0.5
    with pytest.raises(ValueError, match="split must be one of"):
        log.record(3, {"validation": {"accuracy": 1.0}})


def test_a_resumed_log_drops_the_rows_of_the_epochs_it_repeats(tmp_path):
    first = TrainingLog(tmp_path, "semseg", NO_SINKS)
    first.start()
    first.record(1, {"train": {"loss": 2.0}}, step=3, lr=0.01, seconds=1.0)
    state_after_epoch_1 = first.state()  # what the resume state of epoch 1 holds
    first.record(2, {"train": {"loss": 1.0}}, step=6, lr=0.005, seconds=1.0)  # then killed before epoch 2's state
    first.close()
    assert len(read_log(tmp_path / CSV_FILE)) == 2

    resumed = TrainingLog(tmp_path, "semseg", NO_SINKS)
    resumed.start(state_after_epoch_1)
    assert [row["epoch"] for row in read_log(tmp_path / CSV_FILE)] == [1]
    resumed.record(2, {"train": {"loss": 1.0}}, step=6, lr=0.005, seconds=1.0)
    resumed.close()
    assert [row["epoch"] for row in read_log(tmp_path / CSV_FILE)] == [1, 2]
    with pytest.raises(RuntimeError, match="started already"):
        resumed.start()


def test_a_log_without_a_run_folder_keeps_its_rows_in_memory_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    log = TrainingLog(None, "partseg", {"wandb": {"enabled": True}})
    log.start()
    log.record(1, {"train": {"loss": 1.0}}, step=1)
    log.close()
    assert len(log.rows) == 1 and not list(tmp_path.iterdir())


def test_tensorboard_purges_the_repeated_epochs_on_resume(tmp_path):
    pytest.importorskip("tensorboard", reason="TensorBoard logging is optional; the package is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = TrainingLog(tmp_path, "pretrain")
    first.start()
    first.record(1, {"train": {"loss": 2.0}}, step=4, lr=0.1, seconds=1.0)
    state = first.state()
    first.scalars(6, {"loss": 1.7})
    first.record(2, {"train": {"loss": 1.5}}, step=8, lr=0.05, seconds=1.0)
    first.close()
    resumed = TrainingLog(tmp_path, "pretrain")
    resumed.start(state)
    resumed.record(2, {"train": {"loss": 1.25}}, step=8, lr=0.05, seconds=1.0)
    resumed.close()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(4, 2.0), (8, 1.25)]
    assert events.Scalars("step/loss") == []  # purged with the repeated epoch
    assert [e.step for e in events.Scalars("train/lr")] == [4, 8]


def test_settings_block_defaults_and_errors():
    assert LoggingSettings.of(None) == LoggingSettings.of({}) == LoggingSettings()
    assert LoggingSettings().wandb == WandbSettings(enabled=False, project="picat", mode="offline", entity=None)
    settings = LoggingSettings.of({"tensorboard": False, "wandb": {"enabled": True, "project": "p", "mode": "online"}})
    assert not settings.tensorboard and settings.wandb.enabled and settings.wandb.mode == "online"
    with pytest.raises(ValueError, match=r"logging: unknown setting\(s\) \['csv'\]"):
        LoggingSettings.of({"csv": True})
    with pytest.raises(ValueError, match=r"logging.wandb: unknown setting\(s\) \['api_key'\]"):
        LoggingSettings.of({"wandb": {"api_key": "x"}})
    with pytest.raises(ValueError, match="logging.wandb.mode must be one of"):
        LoggingSettings.of({"wandb": {"mode": "cloud"}})
    with pytest.raises(ValueError, match="logging.tensorboard must be true or false"):
        LoggingSettings.of({"tensorboard": "yes"})


def test_wandb_offline_run_files_appear_for_a_segmentation_run(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="Weights & Biases logging is optional; the wandb package is not installed")
    wandb_dir = tmp_path / "wandb_dir"
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(wandb_dir))
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    train, test = dataset([0, 1, 0, 1], 32, seed=4), dataset([0, 1], 32, seed=5)
    settings = PartSegSettings(epochs=2, batch_size=2, n_points=16, optimizer="adamw", lr=0.01)
    torch.manual_seed(0)
    run_dir = tmp_path / "seed0"
    result = run_part_segmentation(TinyPartSegmenter(), train, test, settings, seed=0, log=io.StringIO(),
                                   run_dir=run_dir, logging_settings={"wandb": {"enabled": True, "mode": "offline",
                                                                                "project": "picat-test"}})
    runs = list((wandb_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list(wandb_dir.rglob("*"))
    assert list(runs[0].glob("run-*.wandb")), list(runs[0].iterdir())
    rows = read_log(run_dir / CSV_FILE)
    assert [(r["epoch"], r["split"], r["metric"]) for r in rows] == [
        (1, "train", "loss"), (1, "train", "accuracy"), (2, "train", "loss"), (2, "train", "accuracy"),
        (2, "test", "instance_miou"), (2, "test", "class_miou")]
    assert rows[-2]["value"] == result["test"]["instance_miou"]
