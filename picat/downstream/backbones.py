"""The backbone a downstream run starts from: a Pic@Point checkpoint or a random init.

Both come back with the same ``picat_metadata`` keys, so protocols treat them alike and
every result can say where its backbone came from.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from picat.models.factory import build_point_backbone, load_backbone


def pretrained_backbone(checkpoint: Path) -> nn.Module:
    """The checkpoint's backbone (eval mode), ``picat_metadata`` from the checkpoint."""
    return load_backbone(checkpoint)


def random_backbone(name: str, options: dict[str, Any], seed: int, up_axis: str, normals: bool = False) -> nn.Module:
    """A randomly initialised backbone (``torch.manual_seed(seed)`` first), eval mode.

    Its metadata mirrors a checkpoint's, with no image backbone and no pre-training.
    """
    torch.manual_seed(seed)
    backbone = build_point_backbone(name, options, normals, up_axis)
    backbone.picat_metadata = {"backbone": name, "options": dict(options), "normals": normals, "up_axis": up_axis,
                               "seed": seed, "variant": None, "suite": None, "image_backbone": None,
                               "trainable_parameters": None}
    return backbone.eval()


def image_weights_label(metadata: dict[str, Any]) -> str | None:
    """"<image backbone>/<weights>" of a pre-trained backbone (None for a random init)."""
    image = metadata.get("image_backbone")
    if not image:
        return None
    return f"{image.get('name')}/{image.get('weights')}"


def backbone_source(checkpoint: Path | None, random_spec: dict[str, Any] | None, seed: int,
                    baseline: str) -> tuple[nn.Module, str, str | None, dict[str, Any] | None]:
    """(backbone, init, variant, pre-training metadata or None) of a downstream run.

    Exactly one of ``checkpoint`` (init "pic@point") and ``random_spec`` ({"backbone",
    "options", "up_axis"}: a random init seeded with ``seed``, called ``baseline``) is given.
    A checkpoint that ``picat convert`` imported (``metadata["converted_from"]``) is init
    "imported", its variant the outside format's name (``crosspoint``): it has no Pic@Point
    pre-training variant, and its records must never count as Pic@Point's.
    """
    if (checkpoint is None) == (random_spec is None):
        raise ValueError("give exactly one of a checkpoint and a random-init spec")
    if checkpoint is not None:
        backbone = pretrained_backbone(Path(checkpoint))
        metadata = backbone.picat_metadata
        converted = metadata.get("converted_from")
        if converted:
            return backbone, "imported", str(converted.get("format") or "outside"), metadata
        return backbone, "pic@point", metadata["variant"], metadata
    backbone = random_backbone(random_spec["backbone"], random_spec["options"], seed, random_spec["up_axis"])
    return backbone, baseline, None, None


def trainable_pretrain_params(metadata: dict[str, Any] | None) -> int | None:
    """Trainable parameters of the pre-training model a backbone came from (None for a random init)."""
    return None if metadata is None else (metadata.get("trainable_parameters") or {}).get("total")
