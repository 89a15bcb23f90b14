"""A whole PicAtPoint (backbone and pre-training heads) rebuilt from a checkpoint, for the reports.

Figure 4 and the correspondence metric both need the local heads, not just the backbone
that :func:`picat.load_backbone` gives; both load checkpoints through here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from picat.models.factory import build_point_backbone, load_state_whole, read_checkpoint
from picat.pretrain.model import PicAtPoint, VariantSettings


@dataclass(frozen=True)
class PretrainedModel:
    """A PicAtPoint rebuilt from a checkpoint, with what the figure must say about it."""

    model: PicAtPoint
    path: Path
    backbone: str
    variant: str
    seed: int
    suite: str
    normals: bool
    n_points: int
    image_backbone: dict[str, Any]


def load_pretrained(checkpoint: Path, device: str = "cpu") -> PretrainedModel:
    """Rebuild the whole PicAtPoint (backbone and heads) of a pretrain checkpoint.

    Raises:
        FileNotFoundError: no such file. ValueError: not a picat checkpoint, no heads saved,
            a variant without the local heads (e.g. ``no_local``), or a ``state_dict`` or
            ``pretrain_state_dict`` that does not load whole (a missing, extra or mis-shaped
            tensor), naming the checkpoint (and the tensor).
    """
    path = Path(checkpoint)
    payload = read_checkpoint(path)
    metadata = payload.get("metadata", {})
    variant = metadata.get("variant")
    if variant is None or "pretrain_state_dict" not in payload:
        raise ValueError(f"{path} holds no pre-training heads (pretrain_state_dict/variant missing): "
                         "Figure 4 needs a checkpoint written by `picat pretrain`")
    if not VariantSettings.of(variant).local_loss:
        raise ValueError(f"{path}: variant {variant!r} was pre-trained without the local loss, so it has no local "
                         "heads and cannot show local 2D-3D correspondences (Figure 4); use a 'full' checkpoint")
    settings = metadata.get("settings", {})
    missing = [key for key in ("latent_dim", "pose_dim", "n_points") if key not in settings]
    if missing:
        raise ValueError(f"{path}: metadata.settings lacks {missing}, needed to rebuild the heads")
    state = payload["pretrain_state_dict"]
    backbone = build_point_backbone(payload["backbone"], payload["options"], payload["normals"], payload["up_axis"])
    load_state_whole(backbone, payload.get("state_dict"), path, "state_dict")  # the backbone alone, as load_backbone
    image_key = "image_local.layers.0.weight"  # (latent, image_dim, 1, 1): gives the image feature width
    if not isinstance(state, dict) or not isinstance(state.get(image_key), torch.Tensor) or state[image_key].dim() < 2:
        raise ValueError(f"checkpoint {path}: 'pretrain_state_dict' lacks the (latent, image_dim, ...) tensor "
                         f"{image_key} that gives the image feature width; the file is corrupt or from another model")
    image_dim = int(state[image_key].shape[1])
    model = PicAtPoint(backbone, image_dim, variant, settings["latent_dim"], settings["pose_dim"])
    load_state_whole(model, state, path, "pretrain_state_dict")
    return PretrainedModel(
        model=model.to(device).eval(), path=path, backbone=payload["backbone"], variant=variant,
        seed=int(metadata.get("seed", -1)), suite=str(metadata.get("suite", "unknown")),
        normals=bool(payload["normals"]),
        n_points=int(settings["n_points"]), image_backbone=dict(metadata.get("image_backbone", {})),
    )


def same_image_backbone(recorded: dict[str, Any], cached: dict[str, Any]) -> bool:
    """Whether a cache was made by the checkpoint's 2D backbone (package versions may differ)."""
    keys = ("name", "weights", "weights_sha256")
    return all(recorded.get(key) == cached.get(key) for key in keys)
