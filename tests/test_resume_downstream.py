"""Resume of the long downstream jobs (fine-tuning, part and scene segmentation) on the CPU.

Each protocol's step is run three ways on tiny data with the real (tiny) networks: whole;
stopped after epoch 1, resumed and stopped after epoch 2, resumed to the end (three calls, as
three SLURM attempts would make); and resumed with part of the RNG state left unrestored.
The two-stop run must end with bit-identical weights, history, test metrics and training log
(log.csv, timings aside) to the whole run, and its resume state must be gone once the record
is written; the unrestored runs must end with other weights (so the comparison can fail:
every saved RNG state matters). A kill between an epoch's log rows and its resume state
must not leave that epoch twice in log.csv.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from test_downstream import TINY_POINTNEXT as TINY_CLASSIFIER
from test_downstream import datasets  # noqa: F401  (the shared fixture)
from test_segmentation_stage import TINY_DGCNN, TINY_POINTNEXT, rooms, standins  # noqa: F401  (fixtures)

import picat.resume
from picat.demo.parts import SHAPENETPART_LAYOUT
from picat.resume import RESUME_FILE, run_folder_of
from picat.training_log import CSV_FILE, read_log

TIMING = ("seconds",)


def without_timing(value: Any) -> Any:
    """``value`` with every wall-clock entry (``seconds``) dropped, at any depth."""
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


class Protocol:
    """One protocol's step, with the trained model's final weights caught on the way out."""

    def __init__(self, name: str, inputs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
        self.name, self.inputs = name, inputs
        self.weights: dict[str, torch.Tensor] | None = None
        stage = __import__(f"picat.stages.{name}", fromlist=["_"])
        loop_name = {"finetune": "finetune", "partseg": "run_part_segmentation",
                     "semseg": "run_scene_segmentation"}[name]
        real = getattr(stage, loop_name)

        def spy(model, *args, **kwargs):
            result = real(model, *args, **kwargs)
            self.weights = {key: value.detach().clone() for key, value in model.state_dict().items()}
            return result

        monkeypatch.setattr(stage, loop_name, spy)
        self.stage = stage

    def run(self, output: Path, stop_after_epochs: int | None = None, **overrides: Any) -> Any:
        settings = {**self.inputs["settings"], **overrides}
        log = io.StringIO()
        common = dict(settings=settings, output=output, suite="demo", seed=0, random_spec=self.inputs["spec"],
                      log=log, stop_after_epochs=stop_after_epochs)
        if self.name == "finetune":
            result = self.stage.run_finetune("scanobjectnn_obj_bg", self.inputs["dataset"], device="cpu", **common)
        elif self.name == "partseg":
            result = self.stage.run_partseg(self.inputs["dataset"], device="cpu", **common)
        else:
            result = self.stage.run_semseg(self.inputs["rooms"], device="cpu", **common)
        self.log = log.getvalue()
        return result


@pytest.fixture(params=["finetune", "partseg", "semseg"])
def protocol(request, monkeypatch, datasets, standins, rooms) -> Protocol:  # noqa: F811
    if request.param == "finetune":
        inputs = {"dataset": datasets["scanobjectnn_obj_bg"], "spec": {"backbone": "pointnext",
                                                                       "options": TINY_CLASSIFIER, "up_axis": "y"},
                  # selection on a validation split: the best-so-far state must survive the resume too
                  "settings": {"epochs": 3, "batch_size": 4, "n_points": 32, "lr": 0.01, "selection": "val",
                               "val_fraction": 0.25}}
    elif request.param == "partseg":
        inputs = {"dataset": {"format": "shapenetpart_txt", "root": str(standins / SHAPENETPART_LAYOUT),
                              "normals": False},
                  "spec": TINY_DGCNN, "settings": {"epochs": 3, "batch_size": 2, "n_points": 32, "k": 4, "lr": 0.01}}
    else:
        inputs = {"rooms": rooms, "spec": TINY_POINTNEXT,
                  "settings": {"epochs": 3, "batch_size": 2, "voxel_size": 0.25, "max_points": 256,
                               "crops_per_room": 2, "test_area": 5,
                               "encoder": {"radius": 0.1, "strides": [1, 4, 4, 4, 4]}}}
    return Protocol(request.param, inputs, monkeypatch)


def details(output: Path) -> list[dict[str, Any]]:
    """The written record(s) of ``output`` (a list for every protocol), timings dropped."""
    content = json.loads(output.read_text())
    records = content if isinstance(content, list) else [content]
    return [without_timing({k: v for k, v in record.items() if k not in ("checkpoint", "created")})
            for record in records]


def log_rows(output: Path) -> list[dict[str, Any]]:
    """The run's log.csv rows, wall-clock seconds dropped."""
    return [without_timing(row) for row in read_log(run_folder_of(output) / CSV_FILE)]


def test_killed_and_resumed_run_equals_an_uninterrupted_run(protocol, tmp_path):
    whole = tmp_path / "whole" / "seed0.json"
    protocol.run(whole)
    whole_weights = protocol.weights
    assert not (run_folder_of(whole) / RESUME_FILE).exists()  # removed once the record is written

    split = tmp_path / "split" / "seed0.json"
    state = run_folder_of(split) / RESUME_FILE
    assert protocol.run(split, stop_after_epochs=1) is None
    assert not split.exists() and state.is_file()
    assert torch.load(state, weights_only=False)["epoch"] == 1
    assert protocol.run(split, stop_after_epochs=2) is None  # a second attempt, stopped again
    assert f"resuming from {state} after epoch 1" in protocol.log
    assert torch.load(state, weights_only=False)["epoch"] == 2
    protocol.run(split)
    assert f"resuming from {state} after epoch 2" in protocol.log
    assert not state.exists() and split.is_file()

    assert whole_weights.keys() == protocol.weights.keys()
    for name, tensor in whole_weights.items():
        assert torch.equal(tensor, protocol.weights[name]), name
    # Same records: value(s), test scores, per-epoch history (timings aside), selected epoch.
    assert details(split) == details(whole)
    # Same training log, each epoch once: train (and val) rows per epoch, then the test rows.
    assert log_rows(split) == log_rows(whole)
    assert [row["epoch"] for row in log_rows(split) if row["metric"] == "loss"] == [1, 2, 3]
    assert {row["split"] for row in log_rows(split)} >= {"train", "test"}


def test_a_kill_between_the_log_and_the_state_repeats_no_rows(protocol, tmp_path, monkeypatch):
    """Killed after epoch 2's rows reached log.csv but before epoch 2's resume state was
    written: the rerun repeats epoch 2, and log.csv still holds each epoch once."""
    whole = tmp_path / "whole" / "seed0.json"
    protocol.run(whole, epochs=2)
    split = tmp_path / "split" / "seed0.json"
    real_save, saves = picat.resume.ResumeFile.save, []

    def save_then_die(self, state):
        saves.append(state["epoch"])
        if state["epoch"] == 2:
            raise KeyboardInterrupt("killed")  # as a SIGINT would, before the state is written
        real_save(self, state)

    monkeypatch.setattr(picat.resume.ResumeFile, "save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        protocol.run(split, epochs=2)
    assert saves == [1, 2]
    assert [row["epoch"] for row in read_log(run_folder_of(split) / CSV_FILE) if row["metric"] == "loss"] == [1, 2]
    monkeypatch.setattr(picat.resume.ResumeFile, "save", real_save)
    protocol.run(split, epochs=2)
    assert "after epoch 1" in protocol.log
    assert log_rows(split) == log_rows(whole)
    assert [row["epoch"] for row in log_rows(split) if row["metric"] == "loss"] == [1, 2]


def partial_restore(skip: str):
    """restore_rng_states that leaves ``skip`` ("global torch" or "own generators") unrestored."""
    real = picat.resume.restore_rng_states

    def restore(states, generators=None):
        if skip == "global torch":
            kept = torch.get_rng_state()
            real(states, generators)
            torch.set_rng_state(kept)
        else:
            saved = {name: (generator.get_state() if isinstance(generator, torch.Generator)
                            else generator.bit_generator.state) for name, generator in (generators or {}).items()}
            real(states, generators)
            for name, generator in (generators or {}).items():
                if isinstance(generator, torch.Generator):
                    generator.set_state(saved[name])
                else:
                    generator.bit_generator.state = saved[name]

    return restore


@pytest.mark.parametrize("skip", ["global torch", "own generators"])
def test_the_comparison_fails_when_an_rng_state_is_not_restored(protocol, tmp_path, monkeypatch, skip):
    """The counterpart of the test above: resuming without restoring torch's global generator
    (dropout) or the protocol's own generators (batch order, samples, augmentation) ends with
    other weights than the whole run; so each saved RNG state is needed and checked."""
    # Fine-tuning reports the last epoch here: a validation pick of epoch 1 would hide epoch 2.
    overrides = {"epochs": 2, **({"selection": "last"} if protocol.name == "finetune" else {})}
    whole = tmp_path / "whole" / "seed0.json"
    protocol.run(whole, **overrides)
    whole_weights = protocol.weights
    split = tmp_path / "split" / "seed0.json"
    assert protocol.run(split, stop_after_epochs=1, **overrides) is None
    module = "picat.downstream.finetune" if protocol.name == "finetune" else "picat.downstream.dense"
    monkeypatch.setattr(f"{module}.restore_rng_states", partial_restore(skip))
    protocol.run(split, **overrides)
    assert any(not torch.equal(tensor, protocol.weights[name]) for name, tensor in whole_weights.items())


def test_a_state_of_other_settings_or_weights_is_refused_and_a_complete_one_only_evaluated(tmp_path):
    from test_downstream import shapes

    from picat.downstream.finetune import FinetuneSettings, finetune
    from picat.models.pointnext import PointNeXtClassifier, PointNeXtConfig

    train_x, train_y = shapes(6, 64, 0)
    test_x, test_y = shapes(3, 64, 1)
    settings = FinetuneSettings(epochs=2, batch_size=4, n_points=32, lr=0.01)

    def run(settings: FinetuneSettings, init_seed: int = 0, stop: int | None = 1) -> tuple[dict | None, str]:
        torch.manual_seed(init_seed)
        model = PointNeXtClassifier(2, PointNeXtConfig(**TINY_CLASSIFIER))
        log = io.StringIO()
        result = finetune(model, train_x[..., :3], train_y, test_x[..., :3], test_y, settings, seed=0, log=log,
                          run_dir=tmp_path, stop_after_epochs=stop)
        return result, log.getvalue()

    assert run(settings)[0] is None and (tmp_path / RESUME_FILE).is_file()
    with pytest.raises(RuntimeError, match="other settings; delete it"):
        run(FinetuneSettings(**{**settings.__dict__, "lr": 0.02}))
    with pytest.raises(RuntimeError, match="other initial_weights; delete it"):
        run(settings, init_seed=1)
    done, log = run(settings, stop=None)
    assert "after epoch 1" in log and "epoch 2/2" in log
    # The state is complete (the stage would remove it now): a further call only evaluates.
    again, log = run(settings, stop=None)
    assert "after epoch 2" in log and "epoch 2/2" not in log
    assert done["test"] == again["test"] and without_timing(done["history"]) == without_timing(again["history"])


def test_run_folder_is_beside_the_record_and_not_the_record():
    assert run_folder_of(Path("results/downstream/demo/finetune/b/pointnext_full/seed0.json")) == Path(
        "results/downstream/demo/finetune/b/pointnext_full/seed0")
    with pytest.raises(ValueError, match="suffix"):
        run_folder_of(Path("results/seed0"))
