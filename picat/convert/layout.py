"""What every outside layout shares: the tensor-by-tensor correspondence and its checks.

A layout (:class:`Layout`) says, for a picat backbone, which outside key holds each of its
tensors and in which shape (:class:`TensorPair`). From that one table both directions follow:
an import checks the outside state_dict against it (every missing, unexpected, mis-shaped or
conflicting tensor named in one ValueError) and renames; an export renames back. The
tensors' values are never changed, only renamed and reshaped by unit dimensions (a picat
``Linear`` weight (O, I) is an outside 1x1 ``Conv1d`` (O, I, 1) or ``Conv2d`` (O, I, 1, 1)
weight), so both directions are exact.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

# The keys a checkpoint file may keep its state_dict under (OpenPoints: "model").
STATE_KEYS = ("model", "state_dict", "model_state_dict", "net", "network", "base_model")
DATA_PARALLEL_PREFIX = "module."
BATCH_COUNT = "num_batches_tracked"


@dataclass(frozen=True)
class TensorPair:
    """One picat tensor and where the outside layout keeps it.

    Attributes:
        picat_key: the key in the picat backbone's state_dict.
        outside_keys: its outside key, then aliases. An alias is the same tensor under a
            second name (the official DGCNN registers each BatchNorm twice, as ``bn1`` and
            inside ``conv1``): an export writes every name, an import needs one of them and
            requires the ones present to agree.
        outside_shape: the shape under the outside keys.
        optional: an import may lack it (BatchNorm's ``num_batches_tracked``, which PyTorch
            before 0.4.1 did not save and which only counts steps); it then stays 0.
    """

    picat_key: str
    outside_keys: tuple[str, ...]
    outside_shape: tuple[int, ...]
    optional: bool = False


def module_pairs(model: nn.Module, picat_prefix: str, outside_prefixes: tuple[str, ...],
                 unit_dims: int = 0) -> list[TensorPair]:
    """The pairs of every tensor of one picat submodule whose outside twin has the same leaf names.

    Args:
        model: the picat backbone.
        picat_prefix: the submodule's path in ``model`` (e.g. ``"edge_convs.0.bn"``).
        outside_prefixes: its outside path, then aliases (e.g. ``("bn1", "conv1.1")``).
        unit_dims: trailing unit dimensions the outside weight has beyond picat's (1 for a
            Linear that is a Conv1d outside, 2 for a Conv2d); biases and BatchNorm tensors keep
            their shape.
    """
    submodule = model.get_submodule(picat_prefix)
    pairs = []
    for leaf, tensor in submodule.state_dict().items():
        shape = tuple(tensor.shape) + (1,) * unit_dims if leaf == "weight" else tuple(tensor.shape)
        pairs.append(TensorPair(f"{picat_prefix}.{leaf}", tuple(f"{p}.{leaf}" for p in outside_prefixes), shape,
                                optional=leaf == BATCH_COUNT))
    return pairs


def check_known(config_type: type, options: dict[str, Any], backbone: str) -> None:
    """Refuse an option that is no field of ``config_type`` (a dataclass), naming the valid ones."""
    known = {field.name for field in dataclasses.fields(config_type)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"--option {', '.join(unknown)}: unknown setting(s) of {backbone}; valid: "
                         f"{', '.join(sorted(known))}, and up_axis")


def _describe(names: list[str], limit: int = 40) -> str:
    """``names`` joined, at most ``limit`` of them and a count of the rest (keeps messages one line)."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


class Layout(abc.ABC):
    """An outside checkpoint layout of one picat backbone (``dgcnn`` or ``pointnext``)."""

    name: str
    backbone: str
    summary: str

    @abc.abstractmethod
    def split(self, state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
        """(backbone tensors under their outside names, keys dropped as the outside model's heads).

        ``state`` has lost its ``module.`` prefix already. Keys that are neither backbone nor a
        known head stay in the backbone part, where :func:`to_picat` reports them as unexpected.
        """

    @abc.abstractmethod
    def infer(self, state: Mapping[str, Tensor], options: dict[str, Any]) -> tuple[dict[str, Any], bool, list[str]]:
        """Build settings of the picat backbone from the backbone tensors' shapes and the user's options.

        Returns:
            (options for :func:`picat.models.factory.build_point_backbone`, normals, notes
            saying what was inferred and what was taken from defaults).

        Raises:
            ValueError: an option contradicts the shapes, or names a setting that the shapes decide.
        """

    @abc.abstractmethod
    def pairs(self, model: nn.Module) -> list[TensorPair]:
        """Every tensor of ``model`` (a picat backbone of :attr:`backbone`) with its outside key(s)."""

    def wrap(self, state: dict[str, Tensor]) -> Any:
        """The object an export saves (the plain state_dict unless the outside code expects a wrapper)."""
        return state

    def export_notes(self, model: nn.Module, options: dict[str, Any]) -> list[str]:
        """What a user of the exported file must know (settings no tensor carries)."""
        return []


def find_state_dict(payload: Any, source: str) -> tuple[dict[str, Tensor], list[str]]:
    """The state_dict in a loaded checkpoint file, without a DataParallel ``module.`` prefix.

    Args:
        payload: what ``torch.load`` returned: a state_dict, or a dict holding one under one of
            :data:`STATE_KEYS` (other entries, e.g. an optimizer's state, are ignored).
        source: the file, for messages.

    Returns:
        (the state_dict, notes on where it was found).
    """
    notes = []
    if isinstance(payload, Mapping) and not all(isinstance(value, Tensor) for value in payload.values()):
        held = [key for key in STATE_KEYS if isinstance(payload.get(key), Mapping)]
        if not held:
            raise ValueError(f"{source} holds neither a state_dict (name -> tensor) nor one under any of "
                             f"{', '.join(STATE_KEYS)}; its keys: {_describe(sorted(map(str, payload)), 20)}")
        notes.append(f"read the state_dict under {held[0]!r}")
        payload = payload[held[0]]
    if not isinstance(payload, Mapping) or not payload:
        raise ValueError(f"{source} does not hold a state_dict (got {type(payload).__name__})")
    not_tensors = [str(key) for key, value in payload.items() if not isinstance(value, Tensor)]
    if not_tensors:
        raise ValueError(f"{source}: the state_dict holds non-tensor entries: {_describe(not_tensors)}")
    state = dict(payload)
    # nn.DataParallel / DistributedDataParallel save every key under "module."; the official
    # DGCNN's pretrained files are saved so.
    if all(key.startswith(DATA_PARALLEL_PREFIX) for key in state):
        state = {key[len(DATA_PARALLEL_PREFIX):]: value for key, value in state.items()}
        notes.append("stripped the DataParallel prefix 'module.'")
    return state, notes


def to_picat(layout: Layout, state: Mapping[str, Tensor], model: nn.Module, source: str) -> list[str]:
    """Load outside backbone tensors into a picat backbone, every tensor checked.

    Args:
        layout: the outside layout.
        state: the backbone part of the outside state_dict (:meth:`Layout.split`).
        model: a freshly built picat backbone of the inferred settings; its tensors are replaced.
        source: the file, for messages.

    Returns:
        Notes (optional tensors that were absent).

    Raises:
        ValueError: naming every missing, unexpected, mis-shaped and conflicting tensor.
    """
    pairs = layout.pairs(model)
    known = {key for pair in pairs for key in pair.outside_keys}
    missing, misshaped, conflicting, absent_optional = [], [], [], []
    for pair in pairs:
        present = [key for key in pair.outside_keys if key in state]
        if not present:
            (absent_optional if pair.optional else missing).append(pair.outside_keys[0])
            continue
        for key in present:
            if tuple(state[key].shape) != pair.outside_shape:
                misshaped.append(f"{key} {tuple(state[key].shape)} (needs {pair.outside_shape})")
        first = state[present[0]]
        for key in present[1:]:
            if state[key].shape == first.shape and not torch.equal(state[key], first):
                conflicting.append(f"{present[0]} vs {key}")
    unexpected = [key for key in state if key not in known]
    problems = [f"{what}: {_describe(names)}" for what, names in
                (("missing tensor(s)", missing), ("unexpected tensor(s)", unexpected),
                 ("mis-shaped tensor(s)", misshaped),
                 ("tensors that should be one and the same differ", conflicting)) if names]
    if problems:
        raise ValueError(f"{source} is not a {layout.name} checkpoint of the {layout.backbone} these shapes "
                         f"describe ({'; '.join(problems)})")
    picat_state = model.state_dict()
    for pair in pairs:
        present = [key for key in pair.outside_keys if key in state]
        if present:
            picat_state[pair.picat_key] = state[present[0]].reshape(picat_state[pair.picat_key].shape)
        else:
            picat_state[pair.picat_key] = torch.zeros_like(picat_state[pair.picat_key])
    model.load_state_dict(picat_state, strict=True)
    notes = []
    if absent_optional:
        notes.append(f"{len(absent_optional)} BatchNorm step counter(s) ({BATCH_COUNT}) absent, set to 0")
    return notes


def from_picat(layout: Layout, model: nn.Module) -> dict[str, Tensor]:
    """The outside state_dict of a picat backbone's tensors (aliases share the tensor, as outside).

    Returns:
        outside key -> tensor, in the order of :meth:`Layout.pairs` (canonical key, then aliases).
    """
    picat_state = model.state_dict()
    out: dict[str, Tensor] = {}
    for pair in layout.pairs(model):
        tensor = picat_state[pair.picat_key].detach().reshape(pair.outside_shape)
        for key in pair.outside_keys:
            out[key] = tensor
    return out
