"""The training loop shared by the two segmentation protocols: per-point cross-entropy,
cosine learning-rate schedule, optional gradient clipping, one summary line per epoch.

The protocols differ only in how they draw a batch (shapes with a category, or room crops
with colours), so they hand this loop a function that yields batches for an epoch.

Device use follows :mod:`picat.accelerator`: the forward pass under the ``amp`` precision
(bf16 autocast or float32), the loss in float32 from float32 logits, non-blocking copies
(from pinned memory on CUDA), and no host read of a device value inside an epoch except
the non-finite-loss check every ``check_every`` steps.

Resume: given a :class:`picat.resume.ResumeFile`, the loop saves its state after every epoch
(model, optimiser, scheduler, the protocol's generators and the global RNG states, history)
and continues from a saved state, so a killed job rerun ends as an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

import torch
from torch import Tensor, nn
from tqdm import tqdm

from picat.accelerator import DeviceSums, FiniteLossGuard, autocast, float32_losses, prepare_device, to_device
from picat.resume import Generators, ResumeFile, restore_rng_states, rng_states
from picat.training_log import TrainingLog

# One batch: the model's inputs (each (B, N, ...) or (B,)) and the (B, N) int64 labels.
Batch = tuple[tuple[Tensor, ...], Tensor]


def checked_logits(model: nn.Module, inputs: Sequence[Tensor], n_classes: int, what: str) -> Tensor:
    """``model(*inputs)``, checked to be (B, N, n_classes) logits for the (B, N, ...) first input."""
    logits = model(*inputs)
    expected = (inputs[0].shape[0], inputs[0].shape[1], n_classes)
    if tuple(logits.shape) != expected:
        raise ValueError(f"the {what} returned logits of shape {tuple(logits.shape)}, expected {expected} "
                         f"(batch, points, {n_classes} classes)")
    return logits


def host_to_device(tensors: Sequence[Tensor], device: torch.device) -> tuple[Tensor, ...]:
    """Non-blocking copies of host tensors to ``device``, staged in pinned memory for CUDA
    (so the copy overlaps the device's work); on the CPU the tensors themselves."""
    if device.type == "cuda":
        tensors = [tensor.pin_memory() for tensor in tensors]
    return to_device(tensors, device)


def as_float32(logits: Tensor) -> Tensor:
    """Autocast (bf16) logits promoted to float32; float32 and float64 logits unchanged."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def train_dense(model: nn.Module, epoch_batches: Callable[[int], list[Batch] | Iterable[Batch]], n_batches: int,
                optimizer: torch.optim.Optimizer, *, epochs: int, min_lr: float, label_smoothing: float,
                grad_clip: float, n_classes: int, name: str, device: torch.device,
                log: TextIO, amp: str = "fp32", check_every: int = 50, resume: ResumeFile | None = None,
                generators: Generators | None = None, stop_after_epochs: int | None = None,
                training_log: TrainingLog | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place for ``epochs`` epochs (or until ``stop_after_epochs``).

    Args:
        epoch_batches: epoch index -> that epoch's batches (drawn lazily, so augmentation and
            sampling happen as training goes), drawing from ``generators`` only.
        n_batches: batches per epoch (for the progress bar and the log's step count).
        grad_clip: max gradient norm; 0 disables clipping.
        name: the protocol's log prefix, e.g. "partseg".
        amp: the forward pass's precision, "fp32", "bf16" or "auto" (:func:`picat.accelerator.resolve_amp`).
        check_every: look for a non-finite loss every this many steps and at the end of each
            epoch (the only host reads of device values within an epoch).
        resume: where the state after every epoch goes (:mod:`picat.resume`); a state found
            there is continued (a completed one is not trained again). None: no state.
        generators: the random generators ``epoch_batches`` draws from, by name; their states
            (and the global ones) are saved with the resume state and restored from it.
        stop_after_epochs: end once that many epochs are complete in total (a cluster's time
            limit); a later call with the same ``resume`` continues.
        training_log: gets the train ``loss`` and ``accuracy`` (percent of points) of every
            epoch (:class:`picat.training_log.TrainingLog`); started here (from the resume
            state's rows), closed by the caller, who may add the test rows. None: no log.

    Returns:
        one row per completed epoch (fewer than ``epochs`` when stopped early): {"epoch",
        "train_loss" (mean over batches' samples), "train_accuracy" (percent of points, argmax
        over all classes), "lr", "seconds"}.

    Raises:
        FloatingPointError: on a NaN or infinite loss, naming the epoch and step.
        RuntimeError: when ``resume`` holds a state written by a run with another identity.
    """
    prepare_device(device)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=min_lr)
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    model.to(device)
    history: list[dict[str, float]] = []
    start_epoch = 0
    state = None if resume is None else resume.load(device)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_states(state["rng"], generators)
        start_epoch, history = state["epoch"], state["history"]
        print(f"[{name}] resuming from {resume.path} after epoch {start_epoch}", file=log, flush=True)
    training_log = training_log or TrainingLog(None, name)
    training_log.start(None if state is None else state["log"])
    last_epoch = epochs if stop_after_epochs is None else min(epochs, stop_after_epochs)
    for epoch in range(start_epoch, last_epoch):
        model.train()
        started, seen, samples = time.time(), 0, 0
        sums = DeviceSums(("loss", "correct"), device)  # loss x batch size, correctly labelled points
        guard = FiniteLossGuard(device, check_every, lambda step, epoch=epoch: FloatingPointError(
            f"non-finite {name} loss at epoch {epoch + 1}, step {step}; lower the learning rate"))
        for inputs, labels in tqdm(epoch_batches(epoch), total=n_batches, desc=f"[{name}] epoch {epoch + 1}/{epochs}",
                                   unit="batch", file=log, mininterval=30.0):
            *inputs, labels = host_to_device((*inputs, labels), device)
            with autocast(device, amp):
                logits = checked_logits(model, inputs, n_classes, f"{name} model")
            logits = as_float32(logits)
            with float32_losses(device):
                loss = criterion(logits.reshape(-1, n_classes), labels.reshape(-1))
            guard.observe(loss)  # raises, every check_every steps, on an earlier non-finite loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            # float64 on the device, as the host's Python floats summed before.
            sums.add({"loss": loss.detach().double() * len(labels),
                      "correct": (logits.detach().argmax(dim=-1) == labels).sum()})
            samples += len(labels)
            seen += labels.numel()
        guard.check()
        totals = sums.values()
        loss_sum, correct = totals["loss"], totals["correct"]
        row = {"epoch": epoch + 1, "train_loss": loss_sum / samples, "train_accuracy": 100.0 * correct / seen,
               "lr": optimizer.param_groups[0]["lr"], "seconds": time.time() - started}
        scheduler.step()
        history.append(row)
        training_log.record(epoch + 1, {"train": {"loss": row["train_loss"], "accuracy": row["train_accuracy"]}},
                            step=(epoch + 1) * n_batches, lr=row["lr"], seconds=row["seconds"])
        if resume is not None:
            # After the epoch's last draw: the RNG states are those the next epoch starts from.
            resume.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "scheduler": scheduler.state_dict(), "rng": rng_states(generators), "epoch": epoch + 1,
                         "history": history, "log": training_log.state()})
        print(f"[{name}] epoch {epoch + 1}/{epochs} loss {row['train_loss']:.4f}, train "
              f"{row['train_accuracy']:.1f}%, lr {row['lr']:.2e} ({row['seconds']:.1f} s)", file=log, flush=True)
    return history
