"""Precision and device hygiene of the downstream loops (and of :mod:`picat.accelerator` itself).

On the CPU: bf16 autocast runs in every loop (fine-tuning, both segmentation protocols, the
SVM's feature extraction) and gives a finite loss close to float32's from the same start; a
non-finite loss is still caught, with its epoch and step, when it appears between two
checks or after the last one of an epoch; the records name the precision used; the
linear SVM's C search gets the job's threads; and the workflow's rules hand the suite's
``amp`` setting to the commands, which accept it.
"""

from __future__ import annotations

import copy
import io
import json
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from test_downstream import TINY_DGCNN, TINY_POINTNEXT, datasets, shapes  # noqa: F401  (the shared fixture)
from test_partseg import TinyPartSegmenter, dataset
from test_segmentation_stage import TINY_DGCNN as SEG_DGCNN
from test_segmentation_stage import TINY_POINTNEXT as SEG_POINTNEXT
from test_segmentation_stage import rooms, standins  # noqa: F401  (the shared fixtures)
from test_semseg import TinySceneSegmenter, make_room, tiny_settings
from torch import nn

from picat import accelerator
from picat.accelerator import (
    AMP_MODES,
    DeviceSums,
    FiniteLossGuard,
    autocast,
    float32_losses,
    loader_options,
    precision_label,
    prepare_device,
    resolve_amp,
    to_device,
)
from picat.cli import AMP_CHOICES, build_parser
from picat.demo.parts import SHAPENETPART_LAYOUT
from picat.downstream import svm as svm_module
from picat.downstream.finetune import FinetuneSettings, finetune
from picat.downstream.partseg import PartSegSettings, evaluate_part_segmenter, train_part_segmenter
from picat.downstream.semseg import evaluate_scene_segmenter, train_scene_segmenter
from picat.downstream.svm import SvmSettings, extract_features, fit_and_score
from picat.models.factory import build_point_backbone
from picat.models.pointnext import PointNeXtClassifier, PointNeXtConfig

REPO = Path(__file__).resolve().parent.parent
CPU = torch.device("cpu")


# --- picat.accelerator -------------------------------------------------------------------------

def test_amp_resolves_per_device_and_rejects_unknown_values():
    cuda = torch.device("cuda")  # only its type is looked at: no GPU needed
    assert [resolve_amp(amp, CPU) for amp in AMP_MODES] == ["fp32", "bf16", "fp32"]
    assert [resolve_amp(amp, cuda) for amp in AMP_MODES] == ["fp32", "bf16", "bf16"]
    with pytest.raises(ValueError, match="amp must be one of fp32, bf16, auto, got 'fp16'"):
        resolve_amp("fp16", CPU)
    with pytest.raises(ValueError, match="amp must be one of"):
        autocast(CPU, "float32")
    assert [precision_label(amp, CPU) for amp in AMP_MODES] == ["fp32", "bf16-autocast", "fp32"]
    assert [precision_label(amp, cuda) for amp in AMP_MODES] == ["fp32+tf32", "bf16-autocast", "bf16-autocast"]
    # The CLI spells the modes out (so `picat --help` does not import torch): they must agree.
    assert tuple(AMP_CHOICES) == AMP_MODES


def test_autocast_runs_products_in_bf16_and_float32_losses_switches_it_off():
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast(CPU, "bf16"):
        assert (a @ b).dtype == torch.bfloat16
        with float32_losses(CPU):
            assert (a @ b).dtype == torch.float32
    for amp in ("fp32", "auto"):  # auto is float32 on the CPU
        with autocast(CPU, amp):
            assert (a @ b).dtype == torch.float32 and not torch.is_autocast_enabled("cpu")


def test_prepare_device_allows_tf32_on_cuda_only():
    matmul, cudnn = torch.backends.cuda.matmul, torch.backends.cudnn
    saved = matmul.allow_tf32, cudnn.allow_tf32  # global flags (not monkeypatch-able): restored below
    try:
        matmul.allow_tf32, cudnn.allow_tf32 = False, False
        prepare_device(CPU)
        assert not matmul.allow_tf32 and not cudnn.allow_tf32
        prepare_device(torch.device("cuda"))  # sets the flags only: no GPU needed
        assert matmul.allow_tf32 and cudnn.allow_tf32
    finally:
        matmul.allow_tf32, cudnn.allow_tf32 = saved


def test_to_device_copies_dicts_and_sequences_and_loader_options_pin_for_cuda_only():
    batch = {"points": torch.ones(2, 3), "labels": torch.zeros(2, dtype=torch.long)}
    moved = to_device(batch, CPU)
    assert set(moved) == set(batch) and all(torch.equal(moved[k], batch[k]) for k in batch)
    assert [t.shape for t in to_device([torch.ones(1), torch.ones(2)], CPU)] == [(1,), (2,)]
    assert loader_options(CPU, 0) == {"pin_memory": False, "persistent_workers": False}
    assert loader_options(torch.device("cuda"), 2) == {"pin_memory": True, "persistent_workers": True}


def test_device_sums_accumulate_in_float64_like_python_floats():
    rng = np.random.default_rng(0)
    losses = [torch.tensor(value, dtype=torch.float32) for value in rng.uniform(0, 3, 200)]
    sums = DeviceSums(("loss", "count"), CPU)
    python_sum = 0.0
    for loss in losses:
        sums.add({"loss": loss.double() * 7, "count": 1})
        python_sum += float(loss) * 7
    values = sums.values()
    assert values == {"loss": python_sum, "count": 200.0}  # bit for bit, not approximately
    assert sums.names == ["loss", "count"]


def test_finite_loss_guard_names_the_first_bad_step_and_reads_only_every_n_steps():
    errors = []

    def error(step: int) -> Exception:
        errors.append(step)
        return FloatingPointError(f"bad step {step}")

    guard = FiniteLossGuard(CPU, 4, error)
    values = [1.0, 2.0, float("nan"), float("inf"), 1.0]
    for value in values[:3]:
        guard.observe(torch.tensor(value))  # step 3 is NaN, but no check is due before step 4
    assert errors == []
    with pytest.raises(FloatingPointError, match="bad step 3"):
        guard.observe(torch.tensor(values[3]))  # step 4: the check; the first bad step is still 3
    assert guard.steps_seen() == 4

    # A NaN after the last periodic check is found by check() at the end of the epoch.
    late = FiniteLossGuard(CPU, 100, lambda step: FloatingPointError(f"step {step}"))
    for value in (0.5, 0.25, float("-inf")):
        late.observe(torch.tensor(value))
    with pytest.raises(FloatingPointError, match="step 3"):
        late.check()
    clean = FiniteLossGuard(CPU, 1, lambda step: AssertionError(step))
    for value in (0.5, 0.25):
        clean.observe(torch.tensor(value))
    clean.check()  # no error
    with pytest.raises(ValueError, match="check_every must be >= 1"):
        FiniteLossGuard(CPU, 0, error)


# --- The loops ---------------------------------------------------------------------------------

class Probe(nn.Module):
    """Wraps a model: counts its forward calls, records whether autocast was on, and from
    call ``poison_at`` on (1-based; None: never) returns NaN logits."""

    def __init__(self, inner: nn.Module, poison_at: int | None = None):
        super().__init__()
        self.inner, self.poison_at, self.calls, self.autocast = inner, poison_at, 0, []

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.autocast.append(torch.is_autocast_enabled("cpu"))
        out = self.inner(*inputs)
        if self.poison_at is not None and self.calls >= self.poison_at:
            out = out * float("nan")
        return out


class TinyClassifier(nn.Module):
    """(B, N, 3) -> (B, 2): a per-point MLP, max-pooled."""

    def __init__(self):
        super().__init__()
        self.point = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 16))
        self.head = nn.Linear(16, 2)

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        return self.head(self.point(points).max(dim=1).values)


def close_losses(fp32: list[dict], bf16: list[dict], rel: float) -> None:
    for a, b in zip(fp32, bf16, strict=True):
        assert np.isfinite(b["train_loss"]) and b["train_loss"] == pytest.approx(a["train_loss"], rel=rel)
    assert any(a["train_loss"] != b["train_loss"] for a, b in zip(fp32, bf16, strict=True))  # bf16 did run


def both_precisions(make_model, run) -> dict[str, tuple[Probe, object]]:
    """``run(probe, amp)`` for fp32 and bf16 from the very same initial weights and global
    random state (dropout draws from it)."""
    torch.manual_seed(0)
    model = make_model()
    out = {}
    for amp in ("fp32", "bf16"):
        probe = Probe(copy.deepcopy(model))
        torch.manual_seed(1)
        out[amp] = probe, run(probe, amp)
    return out


def finetune_data() -> tuple[np.ndarray, ...]:
    (train_x, train_y), (test_x, test_y) = shapes(8, 64, 0), shapes(3, 64, 1)
    return train_x[..., :3], train_y, test_x[..., :3], test_y


def test_finetuning_in_bf16_stays_close_to_float32():
    """The real PointNeXt-S (tiny) classifier: one step (12 clouds) plus the validation and test passes."""
    train_x, train_y, test_x, test_y = finetune_data()
    settings = FinetuneSettings(epochs=1, batch_size=12, n_points=32, lr=0.002, selection="val", val_fraction=0.25)
    runs = both_precisions(lambda: PointNeXtClassifier(2, PointNeXtConfig(**TINY_POINTNEXT)),
                           lambda probe, amp: finetune(probe, train_x, train_y, test_x, test_y, settings, seed=0,
                                                       log=io.StringIO(), amp=amp))
    (fp32_probe, fp32), (bf16_probe, bf16) = runs["fp32"], runs["bf16"]
    close_losses(fp32["history"], bf16["history"], rel=0.05)
    # Every forward pass (the training step, validation, test) ran under the precision asked for.
    assert bf16_probe.autocast == [True] * 3 and fp32_probe.autocast == [False] * 3
    assert 0 <= bf16["test"]["overall_accuracy"] <= 100 and bf16["history"][0]["val_accuracy"] >= 0


def test_part_segmentation_in_bf16_stays_close_to_float32():
    """DGCNN's part segmenter through train_dense (2 steps), then the bf16 test pass."""
    from picat.models.dgcnn import DGCNN, DGCNNConfig
    from picat.models.segmentation import DGCNNPartSegmenter

    train, test = dataset([0, 1, 0, 1], 64, seed=4), dataset([0, 1], 64, seed=5)
    settings = PartSegSettings(epochs=1, batch_size=2, n_points=48, optimizer="adamw", lr=0.001)
    runs = both_precisions(lambda: DGCNNPartSegmenter(DGCNN(DGCNNConfig(**TINY_DGCNN))),
                           lambda probe, amp: train_part_segmenter(probe, train, settings, seed=3, log=io.StringIO(),
                                                                   amp=amp))
    close_losses(runs["fp32"][1], runs["bf16"][1], rel=0.02)
    probe = runs["bf16"][0]
    assert probe.autocast == [True, True]
    scores = evaluate_part_segmenter(probe, test, settings, seed=3, amp="bf16")
    assert probe.autocast[2:] == [True] and 0 <= scores["instance_miou"] <= 100


def test_scene_segmentation_in_bf16_stays_close_to_float32():
    rooms_ = [make_room("Area_1_office_1", 1, seed=6), make_room("Area_2_office_1", 2, seed=7)]
    settings = tiny_settings(epochs=2)
    runs = both_precisions(TinySceneSegmenter,
                           lambda probe, amp: train_scene_segmenter(probe, rooms_, settings, seed=1, log=io.StringIO(),
                                                                    amp=amp))
    close_losses(runs["fp32"][1], runs["bf16"][1], rel=0.02)
    probe = runs["bf16"][0]
    scores = evaluate_scene_segmenter(probe, [make_room("Area_5_office_1", 5, seed=8)], settings, seed=1,
                                      log=io.StringIO(), amp="bf16")
    assert all(probe.autocast) and np.isfinite(scores["overall_accuracy"])


def test_fp32_is_the_default_and_auto_is_float32_on_the_cpu():
    train = dataset([0, 1, 0, 1], 64, seed=4)
    settings = PartSegSettings(epochs=2, batch_size=2, n_points=48, optimizer="adamw", lr=0.01)
    histories = []
    for amp in (None, "fp32", "auto"):
        torch.manual_seed(0)
        options = {} if amp is None else {"amp": amp}
        history = train_part_segmenter(TinyPartSegmenter(), train, settings, seed=3, log=io.StringIO(), **options)
        histories.append([{k: v for k, v in row.items() if k != "seconds"} for row in history])
    assert histories[0] == histories[1] == histories[2]  # bit for bit


def partseg_run(probe: Probe, check_every: int) -> None:
    """Part segmentation, 2 epochs of 3 steps."""
    settings = PartSegSettings(epochs=2, batch_size=2, n_points=16, optimizer="adamw", lr=0.01)
    train_part_segmenter(probe, dataset([0, 1, 0, 1, 0, 1], 16, seed=4), settings, seed=0, log=io.StringIO(),
                         check_every=check_every)


def semseg_run(probe: Probe, check_every: int) -> None:
    """Scene segmentation, 2 epochs of 3 steps (3 rooms x 2 crops, batch 2)."""
    rooms_ = [make_room(f"Area_{a}_office_1", a, seed=a) for a in (1, 2, 3)]
    train_scene_segmenter(probe, rooms_, tiny_settings(epochs=2), seed=0, log=io.StringIO(), check_every=check_every)


def finetune_run(probe: Probe, check_every: int) -> None:
    """Fine-tuning, 2 epochs of 3 steps (16 clouds, batch 5)."""
    train_x, train_y, test_x, test_y = finetune_data()
    finetune(probe, train_x, train_y, test_x, test_y, FinetuneSettings(epochs=2, batch_size=5, n_points=32), seed=0,
             log=io.StringIO(), check_every=check_every)


# Each loop: (its model, a 2-epoch run of 3 steps per epoch, its error message's start).
LOOPS = {"partseg": (TinyPartSegmenter, partseg_run, "non-finite partseg loss"),
         "semseg": (TinySceneSegmenter, semseg_run, "non-finite semseg loss"),
         "finetune": (TinyClassifier, finetune_run, "non-finite fine-tuning loss")}


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_nan_between_checks_raises_at_the_next_check_naming_its_epoch_and_step(loop):
    make, run, message = LOOPS[loop]
    # NaN from call 4 (epoch 2, step 1), a check every 2 steps: raised at epoch 2's step 2.
    probe = Probe(make(), poison_at=4)
    with pytest.raises(FloatingPointError, match=f"{message} at epoch 2, step 1; lower the learning rate"):
        run(probe, 2)
    assert probe.calls == 5  # epoch 1's three steps and two of epoch 2's, no more
    probe = Probe(make(), poison_at=2)
    with pytest.raises(FloatingPointError, match=f"{message} at epoch 1, step 2"):
        run(probe, 2)
    assert probe.calls == 2


@pytest.mark.parametrize("loop", sorted(LOOPS))
def test_a_large_check_every_still_catches_the_nan_at_the_end_of_its_epoch(loop):
    make, run, message = LOOPS[loop]
    probe = Probe(make(), poison_at=3)
    with pytest.raises(FloatingPointError, match=f"{message} at epoch 1, step 3"):
        run(probe, 1000)  # the last step of epoch 1; no periodic check ever falls due
    assert probe.calls == 3  # epoch 2 never started
    probe = Probe(make(), poison_at=5)
    with pytest.raises(FloatingPointError, match=f"{message} at epoch 2, step 2"):
        run(probe, 1000)  # epoch 1 was clean and completed
    assert probe.calls == 6


def test_the_check_falls_due_every_check_every_steps_not_every_step(monkeypatch):
    """The loop reads the guard when it is due, not earlier: with NaN at step 1 and a check every
    3 steps, three forward passes happen before the error."""
    calls = []
    original = FiniteLossGuard.check

    def counting_check(self):
        calls.append(self.steps_seen())
        return original(self)

    monkeypatch.setattr(accelerator.FiniteLossGuard, "check", counting_check)
    probe = Probe(TinyPartSegmenter(), poison_at=1)
    settings = PartSegSettings(epochs=1, batch_size=2, n_points=16, optimizer="adamw", lr=0.01)
    with pytest.raises(FloatingPointError, match="epoch 1, step 1"):
        train_part_segmenter(probe, dataset([0, 1, 0, 1, 0, 1, 0, 1], 16, seed=4), settings, seed=0,
                             log=io.StringIO(), check_every=3)
    assert probe.calls == 3 and calls == [3]


# --- The SVM -----------------------------------------------------------------------------------

def test_svm_features_in_bf16_are_float32_and_close_to_float32_ones():
    clouds, _ = shapes(4, 64, 0)
    for name, options in (("dgcnn", TINY_DGCNN), ("pointnext", TINY_POINTNEXT)):
        torch.manual_seed(0)
        backbone = build_point_backbone(name, options, False, "y")
        fp32 = extract_features(backbone, clouds, 64, 4, log=io.StringIO())
        bf16 = extract_features(backbone, clouds, 64, 4, log=io.StringIO(), amp="bf16")
        assert bf16.dtype == np.float32 and bf16.shape == fp32.shape and np.isfinite(bf16).all()
        assert not np.array_equal(bf16, fp32)
        # Measured: 2.2% (DGCNN, whose feature-space neighbours can change) and 0.4% (PointNeXt).
        assert np.linalg.norm(bf16 - fp32) <= 0.05 * np.linalg.norm(fp32), name


def test_svm_c_search_runs_in_n_jobs_processes(monkeypatch):
    seen = []
    real = svm_module.GridSearchCV

    def spy(*args, **kwargs):
        seen.append(kwargs.get("n_jobs"))
        return real(*args, **kwargs)

    monkeypatch.setattr(svm_module, "GridSearchCV", spy)
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 4)), np.repeat([0, 1], 10)
    x[y == 1] += 3
    settings = SvmSettings(c_grid=(0.1, 1.0), folds=2)
    one = fit_and_score(x, y, x, y, settings)
    two = fit_and_score(x, y, x, y, settings, n_jobs=2)
    assert seen == [1, 2]
    for result in (one, two):
        result.pop("seconds")
    assert one == two  # the result does not depend on the processes


def test_svm_stage_hands_threads_and_amp_on_and_records_the_precision(datasets, tmp_path, monkeypatch):  # noqa: F811
    import picat.stages.features as features
    import picat.stages.svm as stage

    calls = {}
    real_fit, real_extract = stage.fit_and_score, features.extract_features

    def fit_spy(*args, **kwargs):
        calls["n_jobs"] = kwargs.get("n_jobs")
        return real_fit(*args, **kwargs)

    def extract_spy(*args, **kwargs):
        calls.setdefault("amp", []).append(args[7] if len(args) > 7 else kwargs.get("amp"))
        return real_extract(*args, **kwargs)

    monkeypatch.setattr(stage, "fit_and_score", fit_spy)
    monkeypatch.setattr(features, "extract_features", extract_spy)  # the svm stage extracts through it
    settings = {"n_points": 64, "c_grid": [0.01, 1.0], "folds": 2}
    record = stage.run_svm("modelnet40", datasets["modelnet40"], settings, tmp_path / "svm.json", "demo", 5,
                           random_spec={"backbone": "dgcnn", "options": {**TINY_DGCNN}, "up_axis": "y"},
                           device="cpu", log=io.StringIO(), amp="bf16", n_jobs=2)
    assert calls == {"n_jobs": 2, "amp": ["bf16", "bf16"]}
    assert record["details"]["precision"] == "bf16-autocast"
    assert json.loads((tmp_path / "svm.json").read_text())["details"]["precision"] == "bf16-autocast"


# --- Stages, CLI and rules ---------------------------------------------------------------------

def test_training_stages_run_in_bf16_and_record_it(datasets, standins, rooms, tmp_path):  # noqa: F811
    from picat.stages.finetune import run_finetune
    from picat.stages.partseg import run_partseg
    from picat.stages.semseg import run_semseg

    record = run_finetune("scanobjectnn_obj_bg", datasets["scanobjectnn_obj_bg"],
                          {"epochs": 1, "batch_size": 4, "n_points": 32}, tmp_path / "ft.json", "demo", 1,
                          random_spec={"backbone": "pointnext", "options": TINY_POINTNEXT, "up_axis": "y"},
                          device="cpu", log=io.StringIO(), amp="bf16")
    assert record["details"]["precision"] == "bf16-autocast"
    assert np.isfinite(record["details"]["history"][0]["train_loss"])
    spec = {"format": "shapenetpart_txt", "root": str(standins / SHAPENETPART_LAYOUT), "normals": False}
    records = run_partseg(spec, {"epochs": 1, "batch_size": 2, "n_points": 32, "k": 4, "lr": 0.01},
                          tmp_path / "partseg.json", "demo", 0, random_spec=SEG_DGCNN, device="cpu",
                          log=io.StringIO(), amp="bf16")
    assert {r["details"]["precision"] for r in records} == {"bf16-autocast"}
    settings = {"epochs": 1, "batch_size": 2, "voxel_size": 0.25, "max_points": 256, "crops_per_room": 2,
                "test_area": 5, "encoder": {"radius": 0.1, "strides": [1, 4, 4, 4, 4]}}
    records = run_semseg(rooms, settings, tmp_path / "semseg.json", "demo", 0, random_spec=SEG_POINTNEXT,
                         device="cpu", log=io.StringIO(), amp="auto")
    assert {r["details"]["precision"] for r in records} == {"fp32"}  # auto: float32 on the CPU
    written = json.loads((tmp_path / "semseg.json").read_text())
    assert all(r["details"]["precision"] == "fp32" for r in written)


@pytest.mark.parametrize("command", ["svm", "finetune", "partseg", "semseg"])
def test_cli_passes_amp_and_the_svm_threads_to_the_stage(command, monkeypatch):
    module = {"svm": "picat.stages.svm", "finetune": "picat.stages.finetune", "partseg": "picat.stages.partseg",
              "semseg": "picat.stages.semseg"}[command]
    seen = {}
    monkeypatch.setattr(f"{module}.run_{command}", lambda *args, **kwargs: seen.update(kwargs))
    source = ["--benchmark", "modelnet40", "--dataset", "{}"] if command in ("svm", "finetune") else (
        ["--dataset", "{}"] if command == "partseg" else ["--rooms", "rooms"])
    argv = [command, *source, "--settings", "{}", "--random", "{}", "--seed", "0", "--suite", "demo", "--out", "x.json",
            "--threads", "3"]
    threads = torch.get_num_threads()
    try:
        args = build_parser().parse_args([*argv, "--amp", "bf16"])
        args.run(args)
        assert seen["amp"] == "bf16"
        assert seen.get("n_jobs") == (3 if command == "svm" else None)
        default = build_parser().parse_args(argv)
        assert default.amp == "fp32"
    finally:
        torch.set_num_threads(threads)
    with pytest.raises(SystemExit):
        build_parser().parse_args([*argv, "--amp", "fp16"])


def test_rules_hand_the_suites_amp_to_the_downstream_commands(tmp_path):
    """A dry run of the demo suite with ``amp: bf16``: every frozen-feature extraction (the svm and
    fewshot protocols' forward passes), fine-tuning and segmentation command carries ``--amp bf16``
    and parses with the CLI."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["demo"]["amp"] = "bf16"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
               "--configfile", str(tmp_path / "config.yaml"), "--cores", "2", "-n", "-p", "results/tables.csv"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    shells = [line.split("python -m picat ", 1)[1] for line in (result.stdout + result.stderr).splitlines()
              if "python -m picat " in line]
    found: dict[str, int] = {}
    for shell in shells:
        words = shlex.split(shell)
        name = words[0]
        if name not in ("features", "finetune", "partseg", "semseg"):
            continue
        found[name] = found.get(name, 0) + 1
        argv = words[:words.index(">")]
        args = build_parser().parse_args(argv)
        assert args.amp == "bf16", shell
        assert args.threads >= 1
    assert set(found) == {"features", "finetune", "partseg", "semseg"}, found
