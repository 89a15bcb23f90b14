"""The pretrain step: one (backbone, variant, seed) run over all shards, ending in a checkpoint.

Writes into the checkpoint's folder: ``resume.pt`` after every epoch (a restarted job
continues from it; removed once the run is complete), ``log.csv`` (the training log shared by
every loop, :mod:`picat.training_log`; TensorBoard and W&B beside it as configured), and at
the end ``checkpoint.pt`` (the backbone's state_dict plus metadata: variant, seed, suite, the
image backbone and weights whose features it learned from, settings, per-epoch history,
trainable parameter counts) and ``config.json``.

Under torchrun every rank calls :func:`run_pretraining`; rank 0 alone writes files (see
:mod:`picat.pretrain.distributed` for how the global batch is split).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import h5py
import torch

from picat import __version__
from picat.accelerator import precision_label
from picat.atomic import atomic_path, write_json_atomically
from picat.config import pretrain_run_settings
from picat.devices import pick_device
from picat.models.factory import backbone_checkpoint, build_point_backbone
from picat.models.image import ImageBackboneSpec, build_image_backbone
from picat.pretrain.data import ShardObjects
from picat.pretrain.distributed import SINGLE, Ranks
from picat.pretrain.engine import RESUME_FILE, TrainSettings, train
from picat.pretrain.model import PicAtPoint, VariantSettings


def _image_backbone_of_caches(features: Sequence[Path]) -> tuple[dict[str, Any], int]:
    """The image backbone description shared by all feature caches, and its channel count."""
    descriptions, channels = set(), set()
    for path in features:
        with h5py.File(path, "r") as cache:
            descriptions.add(cache.attrs["image_backbone"])
            channels.add(cache["local"].shape[2])
    if len(descriptions) != 1 or len(channels) != 1:
        raise ValueError(f"the feature caches were made by different image backbones: {sorted(descriptions)}")
    return json.loads(descriptions.pop()), channels.pop()


def count_trainable(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def run_pretraining(shards: Sequence[Path], features: Sequence[Path] | None, output: Path, backbone_name: str,
                    variant: str, seed: int, settings: dict[str, Any], up_axis: str, suite: str,
                    image_backbone: dict[str, str] | None = None, device: str | torch.device = "auto",
                    stop_after_epochs: int | None = None, log: TextIO = sys.stderr,
                    ranks: Ranks = SINGLE, amp: str = "fp32",
                    logging_settings: dict[str, Any] | None = None) -> Path | None:
    """Pre-train one backbone; returns the checkpoint path (None when stopped early).

    Args:
        features: the encode caches of ``shards``; None to run the frozen 2D backbone
            (``image_backbone`` = {"name", "weights"}) on the renders in every step.
        settings: the suite's ``pretrain`` config block.
        device: this process's device (under torchrun, the one
            :func:`picat.pretrain.distributed.init_distributed` picked for the rank).
        ranks: this process's place in a data-parallel run; ``settings["batch_size"]`` is
            the global batch.
        amp: the suite's precision setting (fp32, bf16 or auto: see :mod:`picat.accelerator`).
        logging_settings: the ``logging`` block (:class:`picat.training_log.LoggingSettings`;
            None: ``log.csv`` and TensorBoard, no W&B).
    """
    variant_settings = VariantSettings.of(variant)
    options = dict(settings[backbone_name])
    torch.manual_seed(seed)
    backbone = build_point_backbone(backbone_name, options, variant_settings.normals, up_axis)
    encoder = None
    if features is None:
        if image_backbone is None:
            raise ValueError("without feature caches, an image backbone spec is needed")
        encoder = build_image_backbone(ImageBackboneSpec(**image_backbone))
        image_description, image_dim = encoder.describe(), encoder.local_dim
    else:
        image_description, image_dim = _image_backbone_of_caches(features)
    model = PicAtPoint(backbone, image_dim, variant, settings["latent_dim"], settings["pose_dim"])
    train_settings = TrainSettings(
        epochs=settings["epochs"], batch_size=settings["batch_size"], lr_point=settings["lr_point"],
        lr_image=settings["lr_image"], weight_decay=settings["weight_decay"], temperature=settings["temperature"],
        rotation=settings["rotation"], up_axis=up_axis, seed=seed, num_workers=settings["num_workers"], amp=amp,
        occlusion=settings.get("occlusion", "all"),  # optional in the config: older blocks train on every centre
        extra={"backbone": backbone_name, "options": options, "variant": variant, "n_points": settings["n_points"],
               "latent_dim": settings["latent_dim"], "pose_dim": settings["pose_dim"],
               "image_backbone": image_description},
    )
    dataset = ShardObjects(shards, features, settings["n_points"], normals=variant_settings.normals)
    if ranks.is_main:
        parallel = ""
        if ranks.distributed:
            parallel = (f", {ranks.world_size} processes x {ranks.per_rank_batch(train_settings.batch_size)} objects "
                        f"= global batch {train_settings.batch_size}")
        print(f"[pretrain] {backbone_name}/{variant}/seed {seed}: {len(dataset)} objects, "
              f"{count_trainable(backbone) / 1e6:.2f} M backbone parameters, "
              f"image features {image_description.get('name')} "
              f"({image_description.get('weights')}), device {pick_device(device)}, "
              f"{precision_label(amp, pick_device(device))}{parallel}", file=log, flush=True)
    output = Path(output)
    history = train(model, dataset, train_settings, output.parent, image_encoder=encoder, device=pick_device(device),
                    stop_after_epochs=stop_after_epochs, log=log, ranks=ranks, logging_settings=logging_settings)
    if len(history) < settings["epochs"]:
        if ranks.is_main:
            print(f"[pretrain] stopped after epoch {len(history)} of {settings['epochs']}; run again to resume",
                  file=log)
        return None
    if not ranks.is_main:
        ranks.barrier()  # return once rank 0 has written the checkpoint
        return output
    metadata = {
        "variant": variant, "seed": seed, "suite": suite, "image_backbone": image_description,
        "precision": precision_label(amp, pick_device(device)),
        "settings": {"occlusion": train_settings.occlusion, **pretrain_run_settings(settings, backbone_name)},
        "history": history, "picat_version": __version__,
        "trainable_parameters": {"backbone": count_trainable(backbone), "total": count_trainable(model)},
    }
    payload = backbone_checkpoint(backbone_name, options, variant_settings.normals, up_axis, backbone.cpu(), metadata)
    payload["pretrain_state_dict"] = model.cpu().state_dict()  # heads too, e.g. for the Figure 4 heatmaps
    # The checkpoint (the rule's output) is renamed into place last, after its config (log.csv,
    # the training log, is complete since the last epoch).
    with atomic_path(output) as checkpoint_tmp:
        torch.save(payload, checkpoint_tmp)
        write_json_atomically(output.with_name("config.json"), {
            "backbone": backbone_name, "variant": variant, "seed": seed, "suite": suite, "up_axis": up_axis,
            "pretrain": settings, "image_backbone": image_description})
    # The run is complete: its resume state (optimiser moments included) is no longer needed.
    (output.parent / RESUME_FILE).unlink(missing_ok=True)
    print(f"[pretrain] wrote {output}", file=log, flush=True)
    ranks.barrier()
    return output
