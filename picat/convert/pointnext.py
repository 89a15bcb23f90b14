"""PointNeXt in OpenPoints' layout (guochengqian/openpoints, models/backbone/pointnext.py).

OpenPoints' ``PointNextEncoder`` keeps its stages in ``encoder`` (an ``nn.Sequential``), each a
Sequential of blocks: ``encoder.<stage>.<block>``. A classification model (``BaseCls``) holds
the encoder as ``encoder`` and its head as ``prediction``, so a classification checkpoint's
keys read ``encoder.encoder.<stage>.<block>...`` and ``prediction.head...``; OpenPoints saves
them as ``{"model": state_dict, "optimizer": ..., "epoch": ...}``. Block by block, with
picat's :class:`picat.models.pointnext.PointNeXtEncoder` twin (OpenPoints' 1x1 convolutions
are picat's Linear layers: the same matrix, with one or two trailing unit dimensions):

========================  ===========================================  ================================
block                     OpenPoints keys (under encoder.<s>.<b>.)     picat keys (under stages.<s>.<b>.)
========================  ===========================================  ================================
stem (stage 0)            convs.0.0 Conv1d(C_in, w) with bias          linear
set abstraction           convs.<l>.0 Conv2d(no bias), convs.<l>.1 BN  mlp.first / mlp.first_norm (l=0),
(``sa_use_res``)          skipconv.0 Conv1d(C, 2C) with bias           mlp.rest.<3(l-1)> / .<3(l-1)+1>; skip
group-all (last stage)    convs.<l>.0 Conv2d, convs.<l>.1 BN           as the set abstraction, no skip
InvResMLP                 convs.convs.0.0 Conv2d, convs.convs.0.1 BN   aggregate.first / .first_norm
                          pwconv.<m>.0 Conv1d, pwconv.<m>.1 BN         pointwise.<3m> / .<3m+1>
========================  ===========================================  ================================

The computations agree too (checked against a textbook twin in tests/test_convert.py): input
columns [xyz, height] (OpenPoints' ``x = cat(pos, heights)``), grouped input [dp / r, f_j] with
dp first, FPS from point 0, ball query taking the first K points inside the ball in index
order, group-all on absolute xyz, max pooling.

What does not map: picat implements only the residual set abstraction of PointNeXt-S
(``sa_use_res: True``). OpenPoints' PointNeXt-B/L/XL configs (``sa_use_res: False``) have set
abstractions without ``skipconv`` whose last conv is followed by a ReLU; picat has no such
block, so their checkpoints are refused (they would load as missing ``skipconv`` tensors). Nor
do OpenPoints' segmentation models: their stem takes the colours and height without xyz and
their stages stride 4, a different input from picat's segmentation encoder. Radius, its
scaling, nsample and normalize_dp are not tensors: an import takes PointNeXt-S's values or
``--option``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from picat.convert.layout import Layout, TensorPair, check_known, module_pairs
from picat.models.pointnext import GroupAll, InvResMLP, PointNeXtConfig, SetAbstraction, Stem

ENCODER_PREFIX = "encoder."  # BaseCls.encoder, around PointNextEncoder.encoder
HEAD_PREFIX = "prediction."  # BaseCls.prediction, the classification head
_BLOCK = re.compile(r"^encoder\.(\d+)\.(\d+)\.")
# Settings the tensors decide; an --option naming one is refused.
INFERRED = ("width", "blocks", "sa_layers", "group_all", "use_normals")


def _rest_index(layer: int) -> int:
    """Index in picat's ``mlp(...)`` Sequential of the layer-th Linear (each is Linear, BN, ReLU)."""
    return 3 * layer


def _grouped_pairs(model: nn.Module, picat: str, outside: str, layers: int, unit_dims: int) -> list[TensorPair]:
    """Pairs of a picat _GroupedMLP at ``picat`` and an OpenPoints conv Sequential at ``outside``."""
    pairs = module_pairs(model, f"{picat}.first", (f"{outside}.0.0",), unit_dims)
    pairs += module_pairs(model, f"{picat}.first_norm", (f"{outside}.0.1",))
    for layer in range(1, layers):
        pairs += module_pairs(model, f"{picat}.rest.{_rest_index(layer - 1)}", (f"{outside}.{layer}.0",), unit_dims)
        pairs += module_pairs(model, f"{picat}.rest.{_rest_index(layer - 1) + 1}", (f"{outside}.{layer}.1",))
    return pairs


class OpenPointsPointNeXtLayout(Layout):
    """OpenPoints' PointNextEncoder, as held by its BaseCls classifier (``encoder.encoder.<s>.<b>...``)."""

    name = "openpoints-pointnext"
    backbone = "pointnext"
    summary = ("OpenPoints' (guochengqian/openpoints) PointNeXt-S encoder in a classification checkpoint "
               "({'model': {'encoder.encoder.<stage>.<block>...'}})")

    def split(self, state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
        # A BaseCls state_dict nests the encoder's keys under "encoder."; a bare
        # PointNextEncoder's start at "encoder.<stage>". Strip the outer one where it is there.
        nested = any(key.startswith(ENCODER_PREFIX + ENCODER_PREFIX) for key in state)
        backbone, dropped = {}, []
        for key, value in state.items():
            if key.startswith(HEAD_PREFIX):
                dropped.append(key)
            elif nested and key.startswith(ENCODER_PREFIX):
                backbone[key[len(ENCODER_PREFIX):]] = value
            else:
                backbone[key] = value
        return backbone, dropped

    def infer(self, state: Mapping[str, Tensor], options: dict[str, Any]) -> tuple[dict[str, Any], bool, list[str]]:
        check_known(PointNeXtConfig, options, self.backbone)
        decided = sorted(set(options) & set(INFERRED))
        if decided:
            raise ValueError(f"--option {', '.join(decided)}: the tensors' shapes decide {', '.join(INFERRED)}; "
                             "leave them out")
        blocks: dict[int, int] = {}
        for key in state:
            match = _BLOCK.match(key)
            if match:
                stage, block = int(match[1]), int(match[2])
                blocks[stage] = max(blocks.get(stage, 0), block + 1)
        n_stages = max(blocks, default=-1) + 1
        stem = state.get("encoder.0.0.convs.0.0.weight")
        if n_stages < 2 or stem is None or stem.dim() != 3:
            found = f"shape {tuple(stem.shape)}" if stem is not None else "absent"
            raise ValueError(f"no OpenPoints PointNeXt encoder here: it needs a stem encoder.0.0.convs.0.0.weight "
                             f"(Conv1d weight (width, in_channels, 1); {found}) and stages encoder.<s>.<b>.* after it "
                             f"({n_stages} stage(s) found)")
        width, in_channels = int(stem.shape[0]), int(stem.shape[1])
        sa_layers = len({key.split(".")[4] for key in state if key.startswith("encoder.1.0.convs.")
                         and key.endswith(".0.weight")}) or 1
        if any(key.startswith(f"encoder.{n_stages - 1}.0.skipconv.") for key in state):
            raise ValueError(f"encoder.{n_stages - 1}.0.skipconv.* is there: the last stage down-samples, so this "
                             "is a segmentation encoder (no group-all stage); the import maps classification "
                             "encoders only (OpenPoints' segmentation stem reads colours + height without xyz, "
                             "unlike picat's)")
        group_all = True
        if not any(key.startswith("encoder.1.0.skipconv.") for key in state):
            raise ValueError("encoder.1.0.skipconv.* is absent: this is a set abstraction without the residual "
                             "branch (OpenPoints sa_use_res: False, PointNeXt-B/L/XL), which picat's PointNeXt "
                             "does not implement (it has PointNeXt-S's residual set abstraction only)")
        expansion = options.get("expansion", PointNeXtConfig.expansion)
        for stage in range(n_stages):
            pointwise = state.get(f"encoder.{stage}.1.pwconv.0.0.weight")
            if pointwise is not None and pointwise.dim() == 3 and "expansion" not in options:
                channels = state.get(f"encoder.{stage}.1.pwconv.1.0.weight")
                if channels is not None and channels.dim() == 3 and channels.shape[0]:
                    expansion = max(1, int(pointwise.shape[0]) // int(channels.shape[0]))
                break
        strides = options.get("strides", [1] + [2] * (n_stages - 2) + [1])
        settings: dict[str, Any] = {**options, "width": width, "blocks": [blocks[s] for s in range(n_stages)],
                                    "strides": list(strides), "sa_layers": sa_layers, "group_all": group_all,
                                    "expansion": expansion}
        use_height = options.get("use_height")
        extra = int(options.get("extra_channels", 0))
        if use_height is None:
            # 3: xyz; 4: xyz + height (OpenPoints' ScanObjectNN input); 6: xyz + normals;
            # 7: xyz + height + normals. Other splits need --option use_height / extra_channels.
            use_height = (in_channels - extra) in (4, 7)
            settings["use_height"] = use_height
        normal_channels = in_channels - 3 - int(bool(use_height)) - extra
        if normal_channels not in (0, 3):
            raise ValueError(f"encoder.0.0.convs.0.0.weight has shape {tuple(stem.shape)}: {in_channels} input "
                             f"channels are not xyz (3) + height ({int(bool(use_height))}) + normals (0 or 3) + "
                             f"extra ({extra}); set --option use_height=... / extra_channels=...")
        normals = normal_channels == 3
        PointNeXtConfig(**{**settings, "use_normals": normals})  # validates the user's options
        given = [name for name in ("radius", "radius_scaling", "nsample", "normalize_dp", "strides") if name in options]
        notes = [f"from the shapes: in_channels {in_channels} (xyz{' + height' if use_height else ''}"
                 f"{' + normals' if normals else ''}{f' + {extra} extra' if extra else ''}), width {width}, "
                 f"blocks {settings['blocks']}, sa_layers {sa_layers}, group_all {group_all}"]
        defaults = [name for name in ("radius", "radius_scaling", "nsample", "normalize_dp", "strides")
                    if name not in given]
        if defaults:
            config = PointNeXtConfig(**{**settings, "use_normals": normals})
            notes.append("not stored in the file, PointNeXt-S's values used (set with --option name=value): "
                         + ", ".join(f"{name} {getattr(config, name)}" for name in defaults))
        return settings, normals, notes

    def pairs(self, model: nn.Module) -> list[TensorPair]:
        if not model.config.group_all:
            raise ValueError(f"the {self.name} layout maps classification encoders (group_all True); this "
                             "PointNeXt has no group-all stage")
        pairs: list[TensorPair] = []
        for s, stage in enumerate(model.stages):
            for b, block in enumerate(stage):
                picat, outside = f"stages.{s}.{b}", f"encoder.{s}.{b}"
                if isinstance(block, Stem):
                    pairs += module_pairs(model, f"{picat}.linear", (f"{outside}.convs.0.0",), unit_dims=1)
                elif isinstance(block, SetAbstraction):
                    pairs += _grouped_pairs(model, f"{picat}.mlp", f"{outside}.convs", model.config.sa_layers, 2)
                    if isinstance(block.skip, nn.Linear):
                        pairs += module_pairs(model, f"{picat}.skip", (f"{outside}.skipconv.0",), unit_dims=1)
                elif isinstance(block, GroupAll):
                    pairs += _grouped_pairs(model, f"{picat}.mlp", f"{outside}.convs", model.config.sa_layers, 2)
                elif isinstance(block, InvResMLP):
                    pairs += _grouped_pairs(model, f"{picat}.aggregate", f"{outside}.convs.convs", 1, 2)
                    for m in range(2):
                        pairs += module_pairs(model, f"{picat}.pointwise.{3 * m}", (f"{outside}.pwconv.{m}.0",), 1)
                        pairs += module_pairs(model, f"{picat}.pointwise.{3 * m + 1}", (f"{outside}.pwconv.{m}.1",))
                else:  # a block type this mapping does not know: refuse rather than drop tensors
                    raise ValueError(f"{picat} is a {type(block).__name__}, which the {self.name} layout does not map")
        return pairs

    def wrap(self, state: dict[str, Tensor]) -> Any:
        # What OpenPoints' load_checkpoint(model, path) reads into a BaseCls classifier.
        return {"model": {ENCODER_PREFIX + key: value for key, value in state.items()}}

    def export_notes(self, model: nn.Module, options: dict[str, Any]) -> list[str]:
        config = model.config
        return [f"OpenPoints encoder_args: NAME PointNextEncoder, in_channels {config.in_channels}, width "
                f"{config.width}, blocks {list(config.blocks)}, strides {list(config.strides)}, sa_layers "
                f"{config.sa_layers}, sa_use_res True, radius {config.radius}, radius_scaling "
                f"{config.radius_scaling}, nsample {config.nsample}, expansion {config.expansion}, "
                f"group_args.normalize_dp {config.normalize_dp}",
                "encoder only (keys encoder.encoder.*): OpenPoints' load_checkpoint(model, path) loads it into a "
                "BaseCls and reports the head (prediction.*) as missing"]
