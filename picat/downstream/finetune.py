"""Fine-tuning PointNeXt-S for classification (Table 2), from scratch or from Pic@Point weights.

Settings follow PointNeXt's ScanObjectNN recipe (see ../shared/notes/protocols.md): AdamW
(lr 0.002, weight decay 0.05), cosine schedule down to ``min_lr``, label smoothing 0.3,
gradient clipping at 10, 1024 points, augmentation by random scaling and rotation about the
up axis after centring and normalising. Unlike PointNeXt's code, the checkpoint reported is
never chosen on the test split: it is the last epoch, or (``selection: val``) the epoch with
the best accuracy on a validation split carved, stratified and seeded, from the training set.

Device use follows :mod:`picat.accelerator` as the segmentation loop does
(:mod:`picat.downstream.dense`): forward passes under ``amp``, the loss in float32, and no
host read of a device value within an epoch but the non-finite check every ``check_every`` steps.

With a run folder, the state after every epoch (model, optimiser, scheduler, RNG states,
history and the best-so-far validation state) is saved, and a killed job rerun continues
from it (:mod:`picat.resume`).
"""

from __future__ import annotations

import copy
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from picat.accelerator import DeviceSums, FiniteLossGuard, autocast, float32_losses, prepare_device
from picat.downstream.dense import as_float32, host_to_device
from picat.downstream.settings import settings_from_block
from picat.models.pointnext import PointNeXtClassifier
from picat.pretrain.correspondence import rotations_about_up
from picat.resume import RESUME_FILE, ResumeFile, restore_rng_states, rng_states, weights_fingerprint
from picat.training_log import LoggingSpec, TrainingLog


@dataclass(frozen=True)
class FinetuneSettings:
    """The fine-tuning protocol's settings (the config's ``downstream.finetune`` block)."""

    epochs: int = 250
    batch_size: int = 32
    n_points: int = 1024
    lr: float = 0.002
    min_lr: float = 0.0001
    weight_decay: float = 0.05
    label_smoothing: float = 0.3
    grad_clip: float = 10.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    rotate_up: bool = True
    selection: str = "last"  # "last" or "val"
    val_fraction: float = 0.1

    @classmethod
    def of(cls, block: dict[str, Any]) -> FinetuneSettings:
        """From the config's ``downstream.finetune`` block (minus the run selection keys)."""
        settings = settings_from_block(cls, block, "downstream.finetune")
        if settings.selection not in ("last", "val"):
            raise ValueError(f"downstream.finetune.selection must be 'last' or 'val', got {settings.selection!r}")
        return settings


def normalise(points: np.ndarray) -> np.ndarray:
    """Centre each cloud on its centroid and scale it into the unit sphere; (n, N, 3) -> same."""
    centred = points - points.mean(axis=1, keepdims=True)
    radius = np.linalg.norm(centred, axis=2).max(axis=1).reshape(-1, 1, 1)
    return (centred / np.maximum(radius, 1e-9)).astype(np.float32)


def augment(points: Tensor, settings: FinetuneSettings, up_axis: str, generator: torch.Generator) -> Tensor:
    """Random anisotropic scaling and a random rotation about the up axis; (B, N, 3) -> same."""
    batch = points.shape[0]
    low, high = settings.scale_range
    scale = low + (high - low) * torch.rand(batch, 1, 3, generator=generator)
    points = points * scale.to(points)
    if settings.rotate_up:
        rotation = rotations_about_up(2 * math.pi * torch.rand(batch, generator=generator), up_axis)
        points = torch.einsum("bij,bnj->bni", rotation.to(points), points)
    return points


def split_validation(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (train, val) index arrays carved from the training set, fixed by ``seed``."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(fraction * len(members))) if len(members) > 1 else 0
        val.extend(members[:n_val])
        train.extend(members[n_val:])
    return np.sort(np.array(train, dtype=np.int64)), np.sort(np.array(val, dtype=np.int64))


@torch.no_grad()
def evaluate(model: nn.Module, points: np.ndarray, labels: np.ndarray, settings: FinetuneSettings,
             device: torch.device, amp: str = "fp32") -> dict[str, float]:
    """Overall and mean per-class accuracy (percent) on the first ``n_points`` of each cloud
    (forward passes under ``amp``, the argmax of float32 logits, one host read at the end)."""
    model.eval()
    predictions = []
    for start in range(0, len(points), settings.batch_size):
        batch = host_to_device((torch.from_numpy(points[start:start + settings.batch_size, :settings.n_points]),),
                               device)[0]
        with autocast(device, amp):
            logits = model(batch)
        predictions.append(as_float32(logits).argmax(dim=1))
    predicted = torch.cat(predictions).cpu().numpy()
    per_class = [float((predicted[labels == c] == c).mean()) for c in np.unique(labels)]
    return {"overall_accuracy": 100.0 * float((predicted == labels).mean()),
            "mean_class_accuracy": 100.0 * float(np.mean(per_class))}


def finetune(model: PointNeXtClassifier, train_points: np.ndarray, train_labels: np.ndarray, test_points: np.ndarray,
             test_labels: np.ndarray, settings: FinetuneSettings, seed: int, up_axis: str = "y",
             device: torch.device | None = None, log: TextIO = sys.stderr, amp: str = "fp32",
             check_every: int = 50, *, run_dir: Path | None = None, stop_after_epochs: int | None = None,
             logging_settings: LoggingSpec | None = None) -> dict[str, Any] | None:
    """Fine-tune ``model`` and evaluate the selected epoch on the test split once.

    With ``run_dir``, the state after every epoch goes to ``run_dir/resume.pt``
    (:mod:`picat.resume`), and a call that finds one continues from it (a rerun after a kill
    ends bit-identical on the CPU to an uninterrupted run); the caller removes it once the
    result is stored. A completed state is not trained again: the call only evaluates.

    Args:
        train_points, test_points: (n, N, 3) clouds (normalised here), N >= ``n_points``.
        train_labels, test_labels: (n,) int64.
        amp: the forward passes' precision, "fp32", "bf16" or "auto" (:func:`picat.accelerator.resolve_amp`).
        check_every: look for a non-finite loss every this many steps and at the end of each epoch.
        run_dir: the run folder for the resume state (None: no resume state).
        stop_after_epochs: end this call once that many epochs are complete in total (a
            cluster's time limit); a later call with the same ``run_dir`` resumes.
        logging_settings: the ``logging`` block (:class:`picat.training_log.LoggingSettings`):
            with ``run_dir``, ``run_dir/log.csv`` always gets per epoch the train ``loss`` and
            ``accuracy`` (percent of clouds), with ``selection: val`` the val ``accuracy``, and
            at the end the test ``overall_accuracy`` and ``mean_class_accuracy`` (epoch: the one
            tested); TensorBoard and W&B as the block says.

    Returns:
        {"test": {"overall_accuracy", "mean_class_accuracy"}, "selected_epoch", "history": [...],
         "settings": {...}, "n_train", "n_val", "n_test"}; None when stopped before the last epoch.

    Raises:
        RuntimeError: when ``run_dir`` holds a resume state of a run with other settings, seed,
            data sizes or initial weights.
        FloatingPointError: on a NaN or infinite training loss, naming the epoch and step.
    """
    device = device or torch.device("cpu")
    prepare_device(device)
    if train_points.shape[1] < settings.n_points:
        raise ValueError(f"the training clouds have {train_points.shape[1]} points, "
                         f"fewer than n_points={settings.n_points}")
    train_points, test_points = normalise(train_points[..., :3]), normalise(test_points[..., :3])
    val_points = val_labels = None
    if settings.selection == "val":
        train_index, val_index = split_validation(train_labels, settings.val_fraction, seed)
        val_points, val_labels = train_points[val_index], train_labels[val_index]
        train_points, train_labels = train_points[train_index], train_labels[train_index]
    if len(train_points) < settings.batch_size:
        raise ValueError(f"{len(train_points)} training clouds are fewer than one batch of {settings.batch_size}")
    generator = torch.Generator().manual_seed(seed)
    model.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs, eta_min=settings.min_lr)
    criterion = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    history: list[dict[str, float]] = []
    best_state, best_val, selected_epoch = None, -1.0, settings.epochs
    n_total = train_points.shape[1]
    identity = {"protocol": "finetune", "settings": asdict(settings), "seed": seed, "up_axis": up_axis, "amp": amp,
                "n_train": int(len(train_points)), "n_val": 0 if val_points is None else int(len(val_points))}
    # The fingerprint of the starting weights: a state from a fine-tuning of other pre-trained
    # weights (or another head seed) is refused, not continued.
    resume = None if run_dir is None else ResumeFile(Path(run_dir) / RESUME_FILE,
                                                     {**identity, "initial_weights": weights_fingerprint(model)})
    state = None if resume is None else resume.load(device)
    start_epoch = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_states(state["rng"], {"batches": generator})
        start_epoch, history = state["epoch"], state["history"]
        best_state, best_val, selected_epoch = state["best_state"], state["best_val"], state["selected_epoch"]
        print(f"[finetune] resuming from {resume.path} after epoch {start_epoch}", file=log, flush=True)
    steps_per_epoch = len(train_points) // settings.batch_size  # whole batches only
    with TrainingLog(run_dir, "finetune", logging_settings, config=identity) as training_log:
        training_log.start(None if state is None else state["log"])
        last_epoch = settings.epochs if stop_after_epochs is None else min(settings.epochs, stop_after_epochs)
        for epoch in range(start_epoch, last_epoch):
            model.train()
            started, seen = time.time(), 0
            sums = DeviceSums(("loss", "correct"), device)  # loss x batch size, correctly labelled clouds
            guard = FiniteLossGuard(device, check_every, lambda step, epoch=epoch: FloatingPointError(
                f"non-finite fine-tuning loss at epoch {epoch + 1}, step {step}; lower the learning rate"))
            order = torch.randperm(len(train_points), generator=generator).numpy()
            batches = [order[i:i + settings.batch_size]
                       for i in range(0, len(order) - settings.batch_size + 1, settings.batch_size)]
            for index in tqdm(batches, desc=f"[finetune] epoch {epoch + 1}/{settings.epochs}", unit="batch", file=log,
                              mininterval=30.0):
                # A fresh random subset of points per cloud and epoch, as PointNeXt samples them.
                subset = torch.randperm(n_total, generator=generator)[:settings.n_points].numpy()
                points, labels = host_to_device((augment(torch.from_numpy(train_points[index][:, subset]), settings,
                                                         up_axis, generator), torch.from_numpy(train_labels[index])),
                                                device)
                with autocast(device, amp):
                    logits = model(points)
                logits = as_float32(logits)
                with float32_losses(device):
                    loss = criterion(logits, labels)
                guard.observe(loss)  # raises, every check_every steps, on an earlier non-finite loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                optimizer.step()
                # float64 on the device, as the host's Python floats summed before.
                sums.add({"loss": loss.detach().double() * len(index),
                          "correct": (logits.detach().argmax(dim=1) == labels).sum()})
                seen += len(index)
            guard.check()
            totals = sums.values()
            loss_sum, correct = totals["loss"], totals["correct"]
            row = {"epoch": epoch + 1, "train_loss": loss_sum / seen, "train_accuracy": 100.0 * correct / seen,
                   "lr": optimizer.param_groups[0]["lr"], "seconds": time.time() - started}
            scheduler.step()
            if val_points is not None:
                val = evaluate(model, val_points, val_labels, settings, device, amp)
                row["val_accuracy"] = val["overall_accuracy"]
                if row["val_accuracy"] > best_val:
                    best_val, selected_epoch = row["val_accuracy"], epoch + 1
                    best_state = copy.deepcopy(model.state_dict())
            history.append(row)
            training_log.record(epoch + 1, {"train": {"loss": row["train_loss"], "accuracy": row["train_accuracy"]},
                                            **({"val": {"accuracy": row["val_accuracy"]}} if "val_accuracy" in row
                                               else {})},
                                step=(epoch + 1) * steps_per_epoch, lr=row["lr"], seconds=row["seconds"])
            if resume is not None:
                # After the epoch's last draw: the RNG states are those the next epoch starts from.
                resume.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "rng": rng_states({"batches": generator}),
                             "epoch": epoch + 1, "history": history, "best_state": best_state, "best_val": best_val,
                             "selected_epoch": selected_epoch, "log": training_log.state()})
            extra = f", val {row['val_accuracy']:.1f}%" if "val_accuracy" in row else ""
            print(f"[finetune] epoch {epoch + 1}/{settings.epochs} loss {row['train_loss']:.4f}, "
                  f"train {row['train_accuracy']:.1f}%"
                  f"{extra} ({row['seconds']:.1f} s)", file=log, flush=True)
        if len(history) < settings.epochs:
            print(f"[finetune] stopped after epoch {len(history)} of {settings.epochs}; run again to resume",
                  file=log, flush=True)
            return None
        if best_state is not None:
            model.load_state_dict(best_state)
        tested = time.time()
        test = evaluate(model, test_points, test_labels, settings, device, amp)
        training_log.record(selected_epoch, {"test": test}, seconds=time.time() - tested)
        print(f"[finetune] test overall accuracy {test['overall_accuracy']:.2f}% (epoch {selected_epoch}, "
              f"selected by {settings.selection})", file=log, flush=True)
        return {"test": test, "selected_epoch": selected_epoch, "history": history, "settings": asdict(settings),
                "n_train": int(len(train_points)), "n_val": 0 if val_points is None else int(len(val_points)),
                "n_test": int(len(test_points))}
