"""DGCNN in the official code's layout (WangYueFt/dgcnn, pytorch/model.py) and CrossPoint's.

The official classification model registers, in this order:

* ``bn1`` .. ``bn4`` (BatchNorm2d 64, 64, 128, 256) and ``bn5`` (BatchNorm1d emb_dims);
* ``conv1`` .. ``conv4`` = Sequential(Conv2d(2C, O, 1, bias=False), the same ``bn<i>``,
  LeakyReLU(0.2)) over the edge feature ``[x_j - x_i, x_i]``, C = 3 for the first;
* ``conv5`` = Sequential(Conv1d(512, emb_dims, 1, bias=False), ``bn5``, LeakyReLU(0.2));
* the classifier head ``linear1`` (2 emb_dims -> 512, no bias), ``bn6``, ``linear2`` (512 -> 256),
  ``bn7``, ``linear3`` (256 -> classes), with dropout between.

Because each BatchNorm is both an attribute and an element of its Sequential, its state_dict
holds every BatchNorm tensor twice, as ``bn1.weight`` and ``conv1.1.weight``: one tensor under
two names. The backbone's output is concat(max, mean) over points of conv5's output, which
is picat's :class:`picat.models.dgcnn.DGCNN` global feature; picat's EdgeConv holds the same
Conv2d and BatchNorm2d tensors (``edge_convs.<i>.conv`` / ``.bn``; ``embed_conv`` / ``embed_bn``),
so the mapping is a renaming, exact both ways.

CrossPoint (MohamedAfham/CrossPoint, models/dgcnn.py ``DGCNN``) is the same backbone with the
same names, plus its projection head ``inv_head`` (Linear, BatchNorm1d, ReLU, Linear) and,
when built for classification (``cls != -1``), the official head.

Neither stores k (a graph setting, not a tensor): an import takes it from ``--option k=...``
(default 20, both codes' default).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from picat.convert.layout import Layout, TensorPair, check_known, module_pairs
from picat.models.dgcnn import DGCNNConfig

OFFICIAL_EDGE_CHANNELS = (64, 64, 128, 256)
OFFICIAL_K = 20
OFFICIAL_HEAD = ("linear1", "bn6", "linear2", "bn7", "linear3")
CROSSPOINT_HEAD = ("inv_head", *OFFICIAL_HEAD)
# Settings the tensors decide; an --option naming one is refused.
INFERRED = ("in_channels", "edge_channels", "emb_dims")


def _head_part(key: str, heads: tuple[str, ...]) -> bool:
    return key.split(".", 1)[0] in heads


def _conv_weight_shape(state: Mapping[str, Tensor], key: str, rank: int) -> tuple[int, ...] | None:
    """The shape of ``state[key]`` if it is there with the given rank, else None (the check reports it)."""
    tensor = state.get(key)
    return tuple(tensor.shape) if tensor is not None and tensor.dim() == rank else None


class OfficialDGCNNLayout(Layout):
    """The official DGCNN's state_dict keys (``conv1.0.weight``, ``bn1.*`` .. ``conv5``, ``bn5``)."""

    name = "dgcnn-official"
    backbone = "dgcnn"
    summary = "the official DGCNN (WangYueFt/dgcnn, pytorch/model.py) classification model's state_dict"
    heads: tuple[str, ...] = OFFICIAL_HEAD

    def split(self, state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
        backbone = {key: value for key, value in state.items() if not _head_part(key, self.heads)}
        return backbone, [key for key in state if _head_part(key, self.heads)]

    def infer(self, state: Mapping[str, Tensor], options: dict[str, Any]) -> tuple[dict[str, Any], bool, list[str]]:
        check_known(DGCNNConfig, options, self.backbone)
        decided = sorted(set(options) & set(INFERRED))
        if decided:
            raise ValueError(f"--option {', '.join(decided)}: the tensors' shapes decide "
                             f"{', '.join(INFERRED)}; leave them out")
        # Where a tensor is absent or of the wrong rank, fall back on the official value: the
        # full check in to_picat then names that tensor.
        first = _conv_weight_shape(state, "conv1.0.weight", 4)
        in_channels = first[1] // 2 if first else 3
        if in_channels not in (3, 6):
            raise ValueError(f"conv1.0.weight has shape {first}: picat's DGCNN takes 3 (xyz) or 6 (xyz + normals) "
                             f"input channels, so (64, 6, 1, 1) or (64, 12, 1, 1)")
        edge = []
        for i, default in enumerate(OFFICIAL_EDGE_CHANNELS, start=1):
            shape = _conv_weight_shape(state, f"conv{i}.0.weight", 4)
            edge.append(shape[0] if shape else default)
        embed = _conv_weight_shape(state, "conv5.0.weight", 3)
        emb_dims = embed[0] if embed else 1024
        settings: dict[str, Any] = {"k": OFFICIAL_K, **options, "emb_dims": emb_dims, "edge_channels": edge}
        DGCNNConfig(**{**settings, "in_channels": in_channels})  # validates the user's options
        notes = [f"from the shapes: in_channels {in_channels}{' (xyz + normals)' if in_channels == 6 else ''}, "
                 f"edge_channels {edge}, emb_dims {emb_dims}"]
        if "k" not in options:
            notes.append(f"k is not stored in the file: using {OFFICIAL_K} (the official default; "
                         "set it with --option k=...)")
        if tuple(edge) != OFFICIAL_EDGE_CHANNELS:
            notes.append(f"edge_channels {edge} differ from the official code's {list(OFFICIAL_EDGE_CHANNELS)}")
        return settings, in_channels == 6, notes

    def pairs(self, model: nn.Module) -> list[TensorPair]:
        layers = len(model.edge_convs)
        if layers != len(OFFICIAL_EDGE_CHANNELS):
            raise ValueError(f"the {self.name} layout has {len(OFFICIAL_EDGE_CHANNELS)} EdgeConv layers "
                             f"(conv1..conv4, then conv5 the embedding); this DGCNN has {layers} "
                             f"(edge_channels {list(model.config.edge_channels)})")
        pairs: list[TensorPair] = []
        for i in range(layers):
            pairs += module_pairs(model, f"edge_convs.{i}.conv", (f"conv{i + 1}.0",))
            pairs += module_pairs(model, f"edge_convs.{i}.bn", (f"bn{i + 1}", f"conv{i + 1}.1"))
        pairs += module_pairs(model, "embed_conv", ("conv5.0",))
        pairs += module_pairs(model, "embed_bn", ("bn5", "conv5.1"))
        return pairs

    def export_notes(self, model: nn.Module, options: dict[str, Any]) -> list[str]:
        config = model.config
        notes = [f"k={config.k}, emb_dims={config.emb_dims}: the file does not store them; build the "
                 f"outside model with these (both codes' flags: --k {config.k} --emb_dims {config.emb_dims})",
                 "backbone only: load it with load_state_dict(..., strict=False), the head stays as initialised"]
        if config.in_channels != 3 or tuple(config.edge_channels) != OFFICIAL_EDGE_CHANNELS:
            notes.append(f"in_channels {config.in_channels}, edge_channels {list(config.edge_channels)}: the stock "
                         f"code builds 3 and {list(OFFICIAL_EDGE_CHANNELS)}; a model to load this into needs these")
        return notes


class CrossPointLayout(OfficialDGCNNLayout):
    """CrossPoint's DGCNN point model: the official backbone names, plus ``inv_head`` (and maybe the official head)."""

    name = "crosspoint"
    summary = "CrossPoint's (MohamedAfham/CrossPoint, models/dgcnn.py) DGCNN point model's state_dict"
    heads = CROSSPOINT_HEAD
