"""Import an outside checkpoint file into picat's format, or export a picat checkpoint to an outside one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from picat import __version__
from picat.atomic import atomic_path
from picat.convert.formats import get_format
from picat.convert.layout import find_state_dict, from_picat, to_picat
from picat.models.factory import backbone_checkpoint, build_point_backbone, load_state_whole, read_checkpoint

Log = Callable[[str], None]


def group_keys(keys: list[str]) -> str:
    """Keys grouped by module, one line: ``bn6.{weight, bias}, linear1.weight``."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        module, _, leaf = key.rpartition(".")
        groups.setdefault(module, []).append(leaf)
    parts = []
    for module, leaves in groups.items():
        if not module:
            parts += leaves
        else:
            parts.append(f"{module}.{leaves[0]}" if len(leaves) == 1 else f"{module}.{{{', '.join(leaves)}}}")
    return ", ".join(parts)


def load_outside(path: str | Path) -> Any:
    """What an outside checkpoint file holds, read as plain tensors and containers (no code runs).

    Raises:
        FileNotFoundError: no such file. ValueError: not a file ``torch.load`` reads with
            ``weights_only=True`` (which refuses arbitrary pickled objects).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError ... for unreadable files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"{path} is not a checkpoint torch.load reads as plain tensors: {first_line}") from error


def import_checkpoint(source: str | Path, target: str | Path, format_name: str,
                      options: dict[str, Any] | None = None, log: Log = print) -> dict[str, Any]:
    """Convert an outside checkpoint into a picat checkpoint (what :func:`picat.load_backbone` reads).

    Args:
        source: the outside file (a state_dict, maybe under "model" / "state_dict", maybe with
            DataParallel's "module." prefix).
        target: the picat checkpoint to write (atomically).
        format_name: a name of :data:`picat.convert.formats.FORMATS`.
        options: backbone settings no tensor holds (DGCNN: k, local_centres; PointNeXt: radius,
            radius_scaling, nsample, normalize_dp, strides, ...), and ``up_axis`` (default "y").
        log: where the notes go (what was inferred, defaulted and dropped).

    Returns:
        The payload written.

    Raises:
        FileNotFoundError: no source. ValueError: not readable, or its tensors do not form the
            format's backbone (the message names every missing, unexpected or mis-shaped tensor),
            or an option is invalid.
    """
    layout = get_format(format_name)
    options = dict(options or {})
    up_axis = str(options.pop("up_axis", "y"))
    state, notes = find_state_dict(load_outside(source), str(source))
    backbone_state, dropped = layout.split(state)
    settings, normals, inferred = layout.infer(backbone_state, options)
    notes += inferred
    model = build_point_backbone(layout.backbone, settings, normals, up_axis)
    notes += to_picat(layout, backbone_state, model, str(source))
    if dropped:
        notes.append(f"dropped {len(dropped)} tensor(s) of the outside model's heads (a picat checkpoint holds "
                     f"the backbone only): {group_keys(dropped)}")
    metadata = {"variant": None, "seed": None, "suite": None, "image_backbone": None, "trainable_parameters": None,
                "picat_version": __version__,
                "converted_from": {"format": layout.name, "file": str(source), "dropped": dropped, "notes": notes}}
    payload = backbone_checkpoint(layout.backbone, settings, normals, up_axis, model, metadata)
    with atomic_path(target) as temporary:
        torch.save(payload, temporary)
    for note in notes:
        log(f"[convert] {note}")
    log(f"[convert] wrote {target}: a picat {layout.backbone} checkpoint ({len(payload['state_dict'])} tensors)")
    return payload


def export_checkpoint(source: str | Path, target: str | Path, format_name: str, log: Log = print) -> Any:
    """Convert a picat checkpoint's backbone into an outside layout.

    Args:
        source: a picat checkpoint (``picat pretrain``'s or :func:`import_checkpoint`'s).
        target: the outside file to write (atomically), ``torch.save`` of the outside state_dict
            (OpenPoints: wrapped as ``{"model": ...}``, as its checkpoints are).
        format_name: a name of :data:`picat.convert.formats.FORMATS`.
        log: where the notes go (settings the file does not store).

    Returns:
        The object written.

    Raises:
        FileNotFoundError: no source. ValueError: not a picat checkpoint, a backbone of
            another kind than the format's, or one the format cannot express.
    """
    layout = get_format(format_name)
    payload = read_checkpoint(source)
    if payload["backbone"] != layout.backbone:
        raise ValueError(f"{source} holds a {payload['backbone']} backbone; the {layout.name} format holds a "
                         f"{layout.backbone}")
    model = build_point_backbone(payload["backbone"], payload["options"], payload["normals"], payload["up_axis"])
    load_state_whole(model, payload.get("state_dict"), source)
    written = layout.wrap(from_picat(layout, model))
    with atomic_path(target) as temporary:
        torch.save(written, temporary)
    notes = layout.export_notes(model, payload["options"])
    if "pretrain_state_dict" in payload:
        notes.append("the pre-training heads (pretrain_state_dict) are not exported")
    for note in notes:
        log(f"[convert] {note}")
    log(f"[convert] wrote {target}: {layout.summary}")
    return written
