"""The Pic@Point training loop: epochs, checkpoints, resume, abort on a non-finite loss.

The loop owns no model definitions: it takes a built :class:`PicAtPoint` model and a
dataset. Per epoch it writes ``resume.pt`` (atomically) in the run folder; a job that is
killed and restarted continues from the last completed epoch, and ends bit-identical on the
CPU to an uninterrupted run (the batches, views and rotations of an epoch depend only on
the seed and the epoch number).

Under torchrun (see :mod:`picat.pretrain.distributed`) the same loop runs in every process
with the model wrapped in DistributedDataParallel; ``batch_size`` is the global batch, each
rank takes its slice, and the loss and gradients equal those of a single process on the
same global batch. Only rank 0 writes ``resume.pt``, the log and TensorBoard events.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from picat.accelerator import (
    DeviceSums,
    FiniteLossGuard,
    autocast,
    float32_losses,
    loader_options,
    prepare_device,
    to_device,
)
from picat.atomic import atomic_path
from picat.devices import pick_device
from picat.pretrain.correspondence import project_to_cells, random_rotations, rotate_with_cameras
from picat.pretrain.data import EpochSampler, ShardObjects
from picat.pretrain.distributed import SINGLE, GlobalBatchSlices, Ranks, rank_slice, use_global_batch_norm
from picat.pretrain.losses import global_infonce, global_infonce_terms, local_infonce, local_infonce_terms
from picat.pretrain.model import PicAtPoint
from picat.pretrain.samples import with_object_samples
from picat.pretrain.visibility import visible_centres
from picat.resume import RESUME_FILE, restore_rng_states, rng_states
from picat.training_log import LoggingSpec, TrainingLog

OCCLUSION_MODES = ("all", "visible")


@dataclass
class TrainSettings:
    """Optimisation settings (paper 4.1: Adam, cosine annealing, wd 1e-6, lr 1e-3 / 5e-5, batch 32)."""

    epochs: int
    batch_size: int = 32
    lr_point: float = 1e-3
    lr_image: float = 5e-5
    weight_decay: float = 1e-6
    temperature: float = 0.1
    rotation: str = "so3"
    up_axis: str = "y"
    seed: int = 0
    num_workers: int = 0
    grid: int = 7
    amp: str = "fp32"  # "fp32" | "bf16" | "auto" (bf16 on CUDA): see picat.accelerator
    # Which local centres the local loss uses: "all" in the image (a centre on the hidden side
    # is matched to the cell of the surface in front of it), or "visible" only, judged by a
    # z-buffer of the cloud (picat.pretrain.visibility).
    occlusion: str = "all"
    extra: dict[str, Any] = field(default_factory=dict)  # recorded, not interpreted here

    def __post_init__(self) -> None:
        if self.occlusion not in OCCLUSION_MODES:
            raise ValueError(f"occlusion must be one of {', '.join(OCCLUSION_MODES)}, got {self.occlusion!r}")


class NonFiniteLossError(RuntimeError):
    """Raised when a step's loss is NaN or infinite (training stops instead of going on silently)."""


def _non_finite(epoch: int, step: int) -> NonFiniteLossError:
    return NonFiniteLossError(f"non-finite loss at epoch {epoch + 1}, step {step}; lower the learning rate, "
                              "check the inputs, or try amp: fp32")


def step_loss(model: nn.Module, batch: dict[str, Tensor], rotation: Tensor, settings: TrainSettings,
              image_encoder: Callable[[Tensor], tuple[Tensor, Tensor]] | None = None,
              ranks: Ranks = SINGLE) -> dict[str, Tensor]:
    """Loss of one batch: rotate clouds (cameras follow), embed, L = L_lcl + L_glb.

    Args:
        model: a :class:`PicAtPoint` (or the DistributedDataParallel wrapping it).
        batch: points (B, N, C), view (B, 4, 4), proj (B, 4, 4), and image_local (B, C', g, g)
            + image_global (B, C') from the cache, or image (B, H, W, 3) uint8 with ``image_encoder``.
            Under several ranks: this rank's slice of the global batch.
        rotation: (B, 3, 3) augmentation rotations (this rank's slice).
        image_encoder: the frozen 2D backbone, for batches that carry images.
        ranks: the data-parallel group; with several ranks the image embeddings of the whole
            global batch are gathered as negatives.

    Returns:
        {"loss", "local", "global", "valid_fraction", "kept_fraction"}: scalar tensors, the
        global batch's values (the same on every rank); valid_fraction is the fraction of
        local centres inside the image, kept_fraction the fraction the local loss uses (the
        same under ``occlusion: all``; inside the image and visible under ``visible``);
        "objective": the tensor to call ``backward`` on (this rank's share, scaled so DDP's
        gradient average is the gradient of the global-batch loss; in a single process it is
        "loss" itself).
    """
    if "image" in batch:
        if image_encoder is None:
            raise ValueError("the batch carries images but no image encoder was given")
        with torch.no_grad(), autocast(batch["image"].device, settings.amp):
            image_local, image_global = image_encoder(batch["image"])
    else:
        image_local, image_global = batch["image_local"], batch["image_global"]
    points, view = rotate_with_cameras(batch["points"], batch["view"], rotation)
    with autocast(points.device, settings.amp):
        out = model(points, view, image_local, image_global,
                    **({"samples": batch["samples"]} if "samples" in batch else {}))
    # The losses in float32 from the (possibly bf16) embeddings: with tau = 0.1, bf16's
    # 8-bit mantissa would put an error of ~0.04 into every logit.
    out = {key: value.to(torch.promote_types(value.dtype, torch.float32)) for key, value in out.items()}
    with float32_losses(points.device):
        return _losses(out, points, view, batch["proj"], settings, ranks)


def local_targets(centres: Tensor, points: Tensor, view: Tensor, proj: Tensor,
                  settings: TrainSettings) -> tuple[Tensor, Tensor, Tensor]:
    """Each local centre's positive cell, whether it is in the image, and whether the loss uses it.

    Args:
        centres: (B, L, 3) the backbone's local centres. points: (B, N, C) the (rotated) clouds.
        view, proj: (B, 4, 4) the (rotated) cameras.

    Returns:
        cells (B, L) long and valid (B, L) bool as :func:`project_to_cells` gives them, and
        kept (B, L) bool: ``valid`` under ``occlusion: all``, ``valid`` and visible
        (:func:`picat.pretrain.visibility.visible_centres`) under ``occlusion: visible``.
    """
    cells, valid = project_to_cells(centres, view, proj, settings.grid)
    if settings.occlusion == "visible":
        return cells, valid, valid & visible_centres(centres, points, view, proj)
    return cells, valid, valid


def _losses(out: dict[str, Tensor], points: Tensor, view: Tensor, proj: Tensor, settings: TrainSettings,
            ranks: Ranks) -> dict[str, Tensor]:
    """The losses of one step from the model's outputs (see :func:`step_loss`)."""
    if ranks.distributed:
        return _sharded_losses(out, points, view, proj, settings, ranks)
    zero = view.new_zeros(())
    losses = {"local": zero, "global": zero, "valid_fraction": zero, "kept_fraction": zero}
    if "z_global" in out:
        losses["global"] = global_infonce(out["z_global"], out["q_global"], settings.temperature)
    if "z_local" in out:
        cells, valid, kept = local_targets(out["centres"], points, view, proj, settings)
        losses["local"] = local_infonce(out["z_local"], out["q_local"], cells, kept, settings.temperature)
        losses["valid_fraction"] = valid.float().mean()
        losses["kept_fraction"] = kept.float().mean()
    losses["loss"] = losses["local"] + losses["global"]
    losses["objective"] = losses["loss"]
    return losses


def _sharded_losses(out: dict[str, Tensor], points: Tensor, view: Tensor, proj: Tensor, settings: TrainSettings,
                    ranks: Ranks) -> dict[str, Tensor]:
    """The losses of one rank's slice, with every rank's image embeddings as negatives.

    With W ranks of b objects (global batch B = W b) and V kept local centres in the global
    batch (visibility is decided per object, so each rank decides for its own objects), the
    global-batch loss is L = S_glb / B + S_lcl / V, where S_* sums per-embedding losses over
    all ranks. Rank r's objective is W (S_glb,r / B + S_lcl,r / V): summed over
    ranks it is W L, and DDP's average over ranks divides by W again.
    """
    some = next(iter(out.values()))
    per_rank, world, first = len(some), ranks.world_size, ranks.rank * len(some)
    zero = some.new_zeros(())
    global_sum, local_sum, kept_count, valid_count, centres = zero, zero, zero.long(), zero.long(), zero.long()
    if "z_global" in out:
        images = ranks.gather(out["q_global"])
        global_sum = global_infonce_terms(out["z_global"], images, settings.temperature, first_positive=first)
    if "z_local" in out:
        cells, valid, kept = local_targets(out["centres"], points, view, proj, settings)
        image_cells = ranks.gather(out["q_local"])
        local_sum, kept_count = local_infonce_terms(out["z_local"], image_cells, cells, kept, settings.temperature,
                                                    first_object=first)
        valid_count = valid.sum()
        centres = centres + valid.numel()
    # One all-reduce (float64: sums and counts stay exact) gives every rank the global values;
    # they stay on the device (no host read, so the step never waits for the GPU).
    totals = ranks.sum(torch.stack([t.detach().double()
                                    for t in (global_sum, local_sum, kept_count, centres, valid_count)]))
    batch_size, kept_total = per_rank * world, totals[2].clamp_min(1.0)
    objective = world * (global_sum / batch_size + local_sum / kept_total.to(zero.dtype))
    losses = {"global": (totals[0] / batch_size).to(zero.dtype),
              "local": (totals[1] / kept_total).to(zero.dtype),
              "valid_fraction": (totals[4] / totals[3].clamp_min(1.0)).to(zero.dtype),
              "kept_fraction": (totals[2] / totals[3].clamp_min(1.0)).to(zero.dtype)}
    losses["loss"] = losses["local"] + losses["global"]
    losses["objective"] = objective
    return losses


def batch_rotations(settings: TrainSettings, epoch: int, step: int, size: int, ranks: Ranks = SINGLE) -> Tensor:
    """The augmentation rotations of one step: drawn for the global batch, this rank's slice kept.

    Args:
        size: this rank's batch size (the global batch has ``size * world_size`` objects).
    """
    generator = torch.Generator().manual_seed((settings.seed * 1_000_003 + epoch) * 1_000_003 + step)
    return rank_slice(random_rotations(size * ranks.world_size, settings.rotation, settings.up_axis, generator), ranks)


# The per-epoch history's values that the training log keeps (besides lr and seconds).
LOG_METRICS = ("loss", "local", "global", "valid_fraction", "kept_fraction", "objects_per_s", "lr_image")


def _log_metrics(row: dict[str, float]) -> dict[str, float]:
    """One history row's train metrics for the training log."""
    return {key: row[key] for key in LOG_METRICS if key in row}


def _log_rows(history: list[dict[str, float]], steps_per_epoch: int) -> list[dict[str, Any]]:
    """The training log's rows of a history (a resume state written before the shared log)."""
    rebuilt = TrainingLog(None, "pretrain")
    rebuilt.start()
    for row in history:
        rebuilt.record(row["epoch"], {"train": _log_metrics(row)}, step=row["epoch"] * steps_per_epoch,
                       lr=row["lr"], seconds=row["seconds"])
    return rebuilt.rows


def data_parallel(model: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """``model`` ready for a data-parallel step: BatchNorm over the global batch, wrapped in DDP.

    A single process gets ``model`` back unchanged. The BatchNorm layers are replaced in
    place (same parameters and buffers, so ``model.state_dict()`` keeps its keys).
    """
    if not ranks.distributed:
        return model
    use_global_batch_norm(model, ranks, device)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def train(model: PicAtPoint, dataset: ShardObjects, settings: TrainSettings, run_dir: Path,
          image_encoder: nn.Module | None = None, device: torch.device | None = None,
          stop_after_epochs: int | None = None, log: TextIO = sys.stderr,
          ranks: Ranks = SINGLE, check_every: int = 50, cache_samples: bool = True,
          logging_settings: LoggingSpec | None = None) -> list[dict[str, float]]:
    """Train ``model`` for ``settings.epochs``, checkpointing every epoch into ``run_dir``.

    Args:
        stop_after_epochs: end this call after that many epochs have been completed in
            total (for cluster time limits); a later call resumes.
        ranks: this process's place in a data-parallel run (the process group must be
            initialised, see :func:`picat.pretrain.distributed.init_distributed`);
            ``settings.batch_size`` is the global batch and must divide by the world size.
        cache_samples: compute the backbone's farthest point samples of every object once,
            before the first epoch, instead of in every step (:mod:`picat.pretrain.samples`).
        check_every: read the loss on the host (non-finite check, progress bar, TensorBoard's
            step curve) every this many steps and at the end of each epoch; in between a step
            never waits for the device.
        logging_settings: the ``logging`` block (:class:`picat.training_log.LoggingSettings`).
            Rank 0 writes ``run_dir/log.csv`` (:mod:`picat.training_log`'s long format; split
            ``train``, metrics ``loss``, ``local``, ``global``, ``valid_fraction``,
            ``kept_fraction``, ``objects_per_s``, ``lr_image``), TensorBoard (with the
            step-level ``step/loss``) and W&B as the block says.

    Returns:
        The per-epoch history (epoch, loss, local, global, valid_fraction, kept_fraction, seconds, lr).

    Raises:
        NonFiniteLossError: on a NaN or infinite loss, naming epoch and step.
    """
    device = device or pick_device()
    prepare_device(device)
    run_dir = Path(run_dir)
    ranks.per_rank_batch(settings.batch_size)  # fail before any work when it does not divide
    if not ranks.is_main:
        log = open(os.devnull, "w")  # noqa: SIM115  (only rank 0 reports)
    run_dir.mkdir(parents=True, exist_ok=True)
    model.to(device)
    if image_encoder is not None:
        image_encoder.to(device)
    optimizer = torch.optim.Adam([
        {"params": model.point_parameters(), "lr": settings.lr_point},
        {"params": model.image_parameters(), "lr": settings.lr_image},
    ], weight_decay=settings.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=settings.epochs)
    if len(dataset) < settings.batch_size:
        raise ValueError(f"the corpus has {len(dataset)} objects, fewer than one batch of {settings.batch_size}")
    history: list[dict[str, float]] = []
    start_epoch = 0
    resume_path = run_dir / RESUME_FILE
    state = None
    if resume_path.is_file():
        state = torch.load(resume_path, map_location=device, weights_only=False)
        # A resume state from before the occlusion option was trained with every centre.
        if {"occlusion": "all", **state["settings"]} != asdict(settings):
            raise RuntimeError(f"{resume_path} was written with other settings; delete it to start afresh")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if "rng" in state:  # states written before the RNG states were saved have none
            restore_rng_states(state["rng"])
        start_epoch, history = state["epoch"], state["history"]
        print(f"[pretrain] resuming from {resume_path} after epoch {start_epoch}", file=log, flush=True)
    if cache_samples:  # FPS once per object, not in every step: the steps only rotate the clouds
        dataset = with_object_samples(dataset, model.backbone, device, log=log)
    # Every rank loaded the same state; wrap only now so DDP's start-up broadcast is a no-op.
    net = data_parallel(model, ranks, device)
    sampler = EpochSampler(len(dataset), dataset.n_views, settings.seed)
    loader = DataLoader(dataset, batch_sampler=GlobalBatchSlices(sampler, settings.batch_size, ranks),
                        num_workers=settings.num_workers, **loader_options(device, settings.num_workers))
    last_epoch = settings.epochs if stop_after_epochs is None else min(settings.epochs, stop_after_epochs)
    training_log = TrainingLog(run_dir if ranks.is_main else None, "pretrain", logging_settings,
                               config=asdict(settings))
    if state is None:
        training_log.start()
    else:  # the log's rows as the state left them (rebuilt from the history in a state from before the log)
        training_log.start(state.get("log") or {"rows": _log_rows(history, len(loader))})
    # A log file is not a terminal: redraw the bar rarely there so the file stays readable.
    interactive = hasattr(log, "isatty") and log.isatty()
    for epoch in range(start_epoch, last_epoch):
        model.train()
        sampler.set_epoch(epoch)
        started = time.time()
        sums = DeviceSums(("loss", "local", "global", "valid_fraction", "kept_fraction"), device)
        guard = FiniteLossGuard(device, check_every, lambda step, epoch=epoch: _non_finite(epoch, step))
        progress = tqdm(loader, desc=f"[pretrain] epoch {epoch + 1}/{settings.epochs}", unit="batch", file=log,
                        mininterval=0.5 if interactive else 30.0, dynamic_ncols=interactive, disable=not ranks.is_main)
        for step, batch in enumerate(progress):
            batch = to_device(batch, device)
            rotation = batch_rotations(settings, epoch, step, len(batch["points"]), ranks).to(device, non_blocking=True)
            losses = step_loss(net, batch, rotation, settings, image_encoder, ranks)
            guard.observe(losses["loss"])  # raises, every check_every steps, on an earlier non-finite loss
            optimizer.zero_grad(set_to_none=True)
            losses["objective"].backward()
            optimizer.step()
            sums.add(losses)
            if (step + 1) % check_every == 0 or step + 1 == len(loader):  # host reads only now and then
                loss_now = float(losses["loss"].detach())
                progress.set_postfix(loss=f"{loss_now:.4f}", refresh=False)
                training_log.scalars(epoch * len(loader) + step + 1, {"loss": loss_now})
        progress.close()
        guard.check()
        steps = guard.steps_seen()
        seconds = time.time() - started
        row = {"epoch": epoch + 1, **{key: value / max(steps, 1) for key, value in sums.values().items()},
               "seconds": seconds, "objects_per_s": steps * settings.batch_size / max(seconds, 1e-9),
               "lr": optimizer.param_groups[0]["lr"], "lr_image": optimizer.param_groups[1]["lr"]}
        scheduler.step()
        history.append(row)
        training_log.record(epoch + 1, {"train": _log_metrics(row)}, step=(epoch + 1) * len(loader), lr=row["lr"],
                            seconds=row["seconds"])
        if ranks.is_main:
            with atomic_path(resume_path) as resume_tmp:
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "history": history,
                            # The global generators: the DataLoader's worker seeds (and any
                            # dropout) draw from torch's; the batches themselves depend on
                            # (seed, epoch, step) only.
                            "rng": rng_states(), "log": training_log.state(), "settings": asdict(settings)},
                           resume_tmp)
        in_view = f", {100 * row['valid_fraction']:.0f}% centres in view" if model.settings.local_loss else ""
        if model.settings.local_loss and settings.occlusion == "visible":
            in_view += f", {100 * row['kept_fraction']:.0f}% visible"
        print(f"[pretrain] epoch {epoch + 1}/{settings.epochs} loss {row['loss']:.4f} (local {row['local']:.4f}, "
              f"global {row['global']:.4f}{in_view}) {row['seconds']:.1f} s", file=log, flush=True)
        if math.isnan(row["loss"]):
            raise NonFiniteLossError(f"non-finite mean loss in epoch {epoch + 1}")
    # (On an exception the process ends: wandb's exit hook closes its run, TensorBoard was flushed per epoch.)
    training_log.close()
    if not ranks.is_main:
        log.close()
    return history
