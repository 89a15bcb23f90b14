"""Build point backbones by name from config blocks, and load pre-trained ones back."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from picat.models.dgcnn import DGCNN, DGCNNConfig
from picat.models.pointnext import PointNeXtConfig, PointNeXtEncoder

CHECKPOINT_FORMAT = "picat-checkpoint-v1"
BACKBONES = ("dgcnn", "pointnext")


def build_point_backbone(name: str, options: dict[str, Any], normals: bool = False, up_axis: str = "y") -> nn.Module:
    """A point backbone with ``forward(points) -> (B, D)`` and ``forward_features``.

    Args:
        name: "dgcnn" or "pointnext".
        options: fields of :class:`DGCNNConfig` / :class:`PointNeXtConfig` (the config's
            ``pretrain.<name>`` block); an unknown field is a ValueError naming it.
        normals: the clouds carry normals (B, N, 6).
        up_axis: the up axis (PointNeXt's height feature).
    """
    if name == "dgcnn":
        config_type, fields = DGCNNConfig, {"in_channels": 6 if normals else 3}
    elif name == "pointnext":
        config_type, fields = PointNeXtConfig, {"use_normals": normals, "up_axis": up_axis}
    else:
        raise ValueError(f"unknown point backbone {name!r}; valid: {', '.join(BACKBONES)}")
    known = {field.name for field in dataclasses.fields(config_type)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"pretrain.{name}: unknown setting(s) {unknown}; valid: {sorted(known)}")
    config = config_type(**{**options, **fields})
    return DGCNN(config) if name == "dgcnn" else PointNeXtEncoder(config)


class LocalBackbone(nn.Module):
    """A backbone whose forward returns (global (B, Dg), local (B, Dl, L), centres (B, L, 3))."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def forward(self, points: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.backbone.forward_features(points)


def backbone_checkpoint(name: str, options: dict[str, Any], normals: bool, up_axis: str, backbone: nn.Module,
                        metadata: dict[str, Any]) -> dict[str, Any]:
    """The payload of a pre-trained backbone checkpoint: a plain state_dict plus metadata."""
    return {"format": CHECKPOINT_FORMAT, "backbone": name, "options": options, "normals": normals,
            "up_axis": up_axis, "state_dict": backbone.state_dict(), "metadata": metadata}


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The payload of a picat checkpoint (:func:`backbone_checkpoint`'s format, plus what
    ``picat pretrain`` adds: ``pretrain_state_dict`` with the heads).

    Raises:
        FileNotFoundError: no such file. ValueError: not a picat checkpoint of this format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    payload = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a picat checkpoint (format {CHECKPOINT_FORMAT})")
    return payload


def load_state_whole(module: nn.Module, state: Any, path: str | Path, key: str = "state_dict") -> None:
    """Load a checkpoint's ``state`` into ``module``, every tensor of it, or fail naming the file and the tensors.

    Raises:
        ValueError: ``state`` is not a mapping of tensors, or a tensor of ``module`` is missing
            from it, it holds a tensor ``module`` lacks, or a tensor's shape differs; the message
            names the checkpoint ``path``, its ``key`` and every offending tensor.
    """
    if not isinstance(state, Mapping):
        raise ValueError(f"checkpoint {path}: {key!r} is a {type(state).__name__}, not a state_dict")
    expected = module.state_dict()
    missing = [name for name in expected if name not in state]
    extra = [name for name in state if name not in expected]
    misshaped = []
    for name, tensor in expected.items():
        given = state.get(name, tensor)
        if not isinstance(given, Tensor) or given.shape != tensor.shape:
            found = tuple(given.shape) if isinstance(given, Tensor) else type(given).__name__
            misshaped.append(f"{name} {found} (the {type(module).__name__} needs {tuple(tensor.shape)})")
    problems = [f"{what}: {', '.join(names)}" for what, names in
                (("missing tensor(s)", missing), ("unexpected tensor(s)", extra), ("mis-shaped tensor(s)", misshaped))
                if names]
    if problems:
        raise ValueError(f"checkpoint {path}: {key!r} does not load whole into its {type(module).__name__} "
                         f"({'; '.join(problems)}); the file is corrupt or from another model")
    module.load_state_dict(state, strict=True)


def load_backbone(path: str | Path, local: bool = False, map_location: str | torch.device = "cpu") -> nn.Module:
    """The pre-trained point backbone of a picat checkpoint, as a plain ``torch.nn.Module``.

    Args:
        path: ``results/pretrain/.../checkpoint.pt``.
        local: return a module whose forward gives (global (B, Dg), local (B, Dl, L),
            centres (B, L, 3)) instead of the global feature (B, Dg) alone.

    Returns:
        The module in eval mode. Its input is points (B, N, 3), or (B, N, 6) with normals
        when it was pre-trained so (``module.picat_metadata["normals"]``).

    Raises:
        FileNotFoundError: no such file. ValueError: not a picat checkpoint, or its state_dict
            does not load whole (a missing, extra or mis-shaped tensor), naming the file and tensor.
    """
    path = Path(path)
    payload = read_checkpoint(path, map_location)
    backbone = build_point_backbone(payload["backbone"], payload["options"], payload["normals"], payload["up_axis"])
    load_state_whole(backbone, payload.get("state_dict"), path, "state_dict")
    module = LocalBackbone(backbone) if local else backbone
    module.picat_metadata = ({key: payload[key] for key in ("backbone", "options", "normals", "up_axis")}
                             | payload["metadata"])
    return module.eval()
