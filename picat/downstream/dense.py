"""The training loop shared by the two segmentation protocols: per-point cross-entropy,
cosine learning-rate schedule, optional gradient clipping, one summary line per epoch.

The protocols differ only in how they draw a batch (shapes with a category, or room crops
with colours), so they hand this loop a function that yields batches for an epoch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

import torch
from torch import Tensor, nn
from tqdm import tqdm

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


def train_dense(model: nn.Module, epoch_batches: Callable[[int], list[Batch] | Iterable[Batch]], n_batches: int,
                optimizer: torch.optim.Optimizer, *, epochs: int, min_lr: float, label_smoothing: float,
                grad_clip: float, n_classes: int, name: str, device: torch.device,
                log: TextIO) -> list[dict[str, float]]:
    """Train ``model`` in place for ``epochs`` epochs.

    Args:
        epoch_batches: epoch index -> that epoch's batches (drawn lazily, so augmentation and
            sampling happen as training goes).
        n_batches: batches per epoch (for the progress bar).
        grad_clip: max gradient norm; 0 disables clipping.
        name: the protocol's log prefix, e.g. "partseg".

    Returns:
        one row per epoch: {"epoch", "train_loss" (mean over batches' samples), "train_accuracy"
        (percent of points, argmax over all classes), "lr", "seconds"}.
    """
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs, eta_min=min_lr)
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    model.to(device)
    history: list[dict[str, float]] = []
    for epoch in range(epochs):
        model.train()
        started, loss_sum, correct, seen, samples = time.time(), 0.0, 0, 0, 0
        for inputs, labels in tqdm(epoch_batches(epoch), total=n_batches, desc=f"[{name}] epoch {epoch + 1}/{epochs}",
                                   unit="batch", file=log, mininterval=30.0):
            inputs, labels = tuple(x.to(device) for x in inputs), labels.to(device)
            logits = checked_logits(model, inputs, n_classes, f"{name} model")
            loss = criterion(logits.reshape(-1, n_classes), labels.reshape(-1))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite {name} loss at epoch {epoch + 1}; lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            loss_sum += float(loss.detach()) * len(labels)
            samples += len(labels)
            correct += int((logits.detach().argmax(dim=-1) == labels).sum())
            seen += labels.numel()
        row = {"epoch": epoch + 1, "train_loss": loss_sum / samples, "train_accuracy": 100.0 * correct / seen,
               "lr": optimizer.param_groups[0]["lr"], "seconds": time.time() - started}
        scheduler.step()
        history.append(row)
        print(f"[{name}] epoch {epoch + 1}/{epochs} loss {row['train_loss']:.4f}, train "
              f"{row['train_accuracy']:.1f}%, lr {row['lr']:.2e} ({row['seconds']:.1f} s)", file=log, flush=True)
    return history
