"""Wiring guard: checkpoints load whole, in every consumer, or fail naming the file and tensor.

A picat checkpoint (``picat.models.factory.backbone_checkpoint``, plus ``pretrain_state_dict``
when ``picat pretrain`` wrote it) is consumed by ``load_backbone`` (also ``picat.load_backbone``),
``picat.downstream.backbones`` (SVM features, fine-tuning), the svm / finetune / partseg /
semseg stages and Figure 4 (``picat.report.figure4``). Each consumer must refuse a checkpoint
with a tensor deleted, an extra tensor or a tensor of another shape, with one ValueError that
names the checkpoint file and the offending tensor, and a backbone loaded from a checkpoint must
compute exactly what the saved model computed (global features, and local features with their
centres). The partial, by-name transfer from a (whole) checkpoint into the scene-segmentation
encoder is by design and stays.

Each corrupted-checkpoint test has a control with the intact checkpoint, which must get past
loading (to the dataset or shard error of a dummy path), so a failure is the checkpoint's.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from test_figure4 import SETTINGS as FIGURE4_SETTINGS
from torch import Tensor, nn

import picat
from picat.config import pretrain_run_settings
from picat.datasets import DatasetError
from picat.downstream.backbones import backbone_source, pretrained_backbone
from picat.models.factory import backbone_checkpoint, build_point_backbone, load_backbone
from picat.models.segmentation import segmentation_encoder
from picat.pretrain.model import PicAtPoint
from picat.report.figure4 import load_pretrained, plot_figure4
from picat.stages.finetune import run_finetune
from picat.stages.partseg import run_partseg
from picat.stages.semseg import run_semseg
from picat.stages.svm import run_svm

# Tiny configurations, as tests/test_downstream.py and tests/test_figure4.py build them.
TINY_OPTIONS: dict[str, dict[str, Any]] = {
    "dgcnn": {"k": 4, "emb_dims": 16, "local_centres": 8},
    "pointnext": {"width": 8, "nsample": 8, "radius": 0.3},  # min_points 16
}
BACKBONES = tuple(TINY_OPTIONS)
N_POINTS = 64
CORRUPTIONS = ("missing", "extra", "misshaped")
EXTRA_TENSOR = "stowaway.weight"  # a name no picat model has
IMAGE_WIDTH_KEY = "image_local.layers.0.weight"  # Figure 4 reads the image feature width from it
TINY_SEG = {"strides": (1, 4, 4), "radius": 0.3}  # as tests/test_segmentation_models.py


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

@torch.no_grad()
def randomise(module: nn.Module, seed: int) -> nn.Module:
    """Perturb every parameter and BatchNorm statistic, so no fresh init (of any seed) and no
    loader that skips parameters or buffers can reproduce the module's outputs."""
    generator = torch.Generator().manual_seed(seed)
    for parameter in module.parameters():
        parameter.add_(0.2 * torch.randn(parameter.shape, generator=generator))
    for name, buffer in module.named_buffers():
        if name.endswith("running_mean"):
            buffer.copy_(0.3 * torch.randn(buffer.shape, generator=generator))
        elif name.endswith("running_var"):
            buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator))
    return module


def saved_backbone(path: Path, name: str, seed: int = 3) -> nn.Module:
    """Write a checkpoint of a tiny randomised ``name`` backbone (as ``picat pretrain`` writes its
    ``state_dict`` part) to ``path``; return the saved module, in eval mode."""
    torch.manual_seed(seed)
    module = randomise(build_point_backbone(name, TINY_OPTIONS[name], False, "y"), seed)
    metadata = {"variant": "full", "seed": seed, "suite": "test", "image_backbone": {"name": "toy", "weights": "none"},
                "trainable_parameters": {"backbone": 1, "total": 2}, "history": []}
    torch.save(backbone_checkpoint(name, TINY_OPTIONS[name], False, "y", module, metadata), path)
    return module.eval()


def saved_pretrain_model(path: Path, name: str, seed: int = 4) -> PicAtPoint:
    """Write the payload ``picat pretrain`` writes (backbone ``state_dict`` plus the whole model's
    ``pretrain_state_dict``, variant "full") for a tiny untrained model; return the model."""
    torch.manual_seed(seed)
    backbone = build_point_backbone(name, TINY_OPTIONS[name], False, "y")
    model = randomise(PicAtPoint(backbone, image_dim=8, variant="full", latent_dim=FIGURE4_SETTINGS["latent_dim"],
                                 pose_dim=FIGURE4_SETTINGS["pose_dim"]), seed)
    settings = pretrain_run_settings({**FIGURE4_SETTINGS, name: TINY_OPTIONS[name]}, name)
    metadata = {"variant": "full", "seed": seed, "suite": "test", "image_backbone": {"name": "toy"},
                "settings": settings}
    payload = backbone_checkpoint(name, TINY_OPTIONS[name], False, "y", backbone, metadata)
    payload["pretrain_state_dict"] = model.state_dict()
    torch.save(payload, path)
    return model.eval()


def victim(state: dict[str, Tensor], prefix: str = "") -> str:
    """A weight (>= 2-D) in the middle of ``state`` whose name starts with ``prefix``."""
    names = [name for name, tensor in state.items() if name.startswith(prefix) and tensor.dim() >= 2]
    assert names, f"no >= 2-D tensor named {prefix}*"
    return names[len(names) // 2]


def corrupt(source: Path, target: Path, how: str, section: str = "state_dict", key: str | None = None) -> str:
    """Copy checkpoint ``source`` to ``target`` with ``payload[section]`` corrupted ``how``:
    "missing" deletes tensor ``key``, "extra" adds one, "misshaped" reshapes ``key`` (same
    values, other shape). ``key`` defaults to :func:`victim`. Returns the offending name."""
    payload = torch.load(source, map_location="cpu", weights_only=False)
    state = payload[section]
    key = key or victim(state)
    if how == "missing":
        del state[key]
        offending = key
    elif how == "extra":
        state[EXTRA_TENSOR] = torch.zeros(3, 2)
        offending = EXTRA_TENSOR
    elif how == "misshaped":
        tensor = state[key]
        state[key] = tensor.reshape(-1) if tensor.dim() > 1 else tensor.reshape(1, -1)
        assert state[key].shape != tensor.shape
        offending = key
    else:
        raise AssertionError(how)
    torch.save(payload, target)
    return offending


def assert_names(caught: pytest.ExceptionInfo, path: Path, key: str) -> None:
    """The error is one ValueError whose message names the checkpoint file and the tensor."""
    message = str(caught.value)
    assert str(path) in message, f"the error does not name the checkpoint {path}: {message}"
    assert key in message, f"the error does not name the tensor {key}: {message}"


def points(n_clouds: int = 2, seed: int = 0) -> Tensor:
    """A fixed (B, N, 3) input."""
    return torch.randn(n_clouds, N_POINTS, 3, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(params=BACKBONES)
def checkpoint(request, tmp_path) -> tuple[str, Path, nn.Module]:
    """(backbone name, an intact checkpoint of it, the saved module)."""
    path = tmp_path / f"{request.param}.pt"
    return request.param, path, saved_backbone(path, request.param)


# --------------------------------------------------------------------------------------------
# load_backbone: whole or a clear error; the loaded backbone computes what was saved
# --------------------------------------------------------------------------------------------

LOADERS: dict[str, Callable[..., nn.Module]] = {
    "factory.load_backbone": load_backbone,
    "picat.load_backbone": picat.load_backbone,
    "factory.load_backbone(local)": lambda path: load_backbone(path, local=True),
    "picat.load_backbone(local)": lambda path: picat.load_backbone(path, local=True),
}


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("loader", sorted(LOADERS))
def test_load_backbone_refuses_a_partial_checkpoint(checkpoint, tmp_path, loader: str, how: str) -> None:
    """Guards load_backbone / picat.load_backbone (global and local) against a non-strict load:
    a deleted, extra or reshaped tensor is a ValueError naming the file and the tensor."""
    _, intact, _ = checkpoint
    LOADERS[loader](intact)  # control: the intact checkpoint loads
    broken = tmp_path / "broken.pt"
    key = corrupt(intact, broken, how)
    with pytest.raises(ValueError) as caught:
        LOADERS[loader](broken)
    assert_names(caught, broken, key)


@pytest.mark.parametrize("kind", ["running_var", "num_batches_tracked"])
def test_load_backbone_refuses_a_checkpoint_without_a_buffer(checkpoint, tmp_path, kind: str) -> None:
    """Guards against a loader that checks parameters only: a BatchNorm buffer missing from
    the checkpoint is an error too."""
    _, intact, _ = checkpoint
    state = torch.load(intact, map_location="cpu", weights_only=False)["state_dict"]
    key = next(name for name in state if name.endswith(kind))
    broken = tmp_path / "broken.pt"
    corrupt(intact, broken, "missing", key=key)
    with pytest.raises(ValueError) as caught:
        load_backbone(broken)
    assert_names(caught, broken, key)


@pytest.mark.parametrize("loader", [load_backbone, picat.load_backbone], ids=["factory", "picat"])
def test_loaded_backbone_computes_exactly_what_was_saved(checkpoint, loader: Callable[..., nn.Module]) -> None:
    """Guards load_backbone's round trip: in eval mode on a fixed input the loaded backbone's
    global feature, and with local=True its (global, local, centres), equal the saved model's
    bit for bit; a fresh init, or the saved parameters without the BN statistics, do not."""
    name, path, saved = checkpoint
    cloud = points()
    with torch.no_grad():
        expected, expected_local = saved(cloud), saved.forward_features(cloud)
        loaded, loaded_local = loader(path), loader(path, local=True)
        assert not loaded.training and not loaded_local.training
        assert torch.equal(loaded(cloud), expected)
        got_local = loaded_local(cloud)
        assert len(got_local) == 3 and got_local[1].shape[-1] == got_local[2].shape[1] > 0
        for part, got, want in zip(("global", "local", "centres"), got_local, expected_local, strict=True):
            assert torch.equal(got, want), f"{name} {part} features differ after loading"
        # Controls: the comparison can fail.
        fresh = build_point_backbone(name, TINY_OPTIONS[name], False, "y").eval()
        assert not torch.equal(fresh(cloud), expected)
        fresh.load_state_dict(dict(saved.named_parameters()), strict=False)  # parameters only
        assert not torch.equal(fresh(cloud), expected)


# --------------------------------------------------------------------------------------------
# downstream consumers: backbone_source and the svm / finetune / partseg / semseg stages
# --------------------------------------------------------------------------------------------

def _missing_classification(root: Path) -> dict[str, Any]:
    return {"format": "scanobjectnn", "root": str(root), "variant": "obj_bg"}


def _run(consumer: str, name: str, path: Path, dummy: Path) -> Any:
    """Run ``consumer`` on checkpoint ``path`` with datasets at the non-existent ``dummy``."""
    log = io.StringIO()
    if consumer == "pretrained_backbone":
        return pretrained_backbone(path)
    if consumer == "backbone_source":
        return backbone_source(path, None, 0, baseline="random")
    if consumer == "svm":
        return run_svm("scanobjectnn_obj_bg", _missing_classification(dummy), {}, dummy / "svm.json", "test", 0,
                       checkpoint=path, device="cpu", log=log)
    if consumer == "finetune":
        return run_finetune("scanobjectnn_obj_bg", _missing_classification(dummy), {"epochs": 1}, dummy / "ft.json",
                            "test", 0, checkpoint=path, device="cpu", log=log)
    if consumer == "partseg":
        return run_partseg({"format": "shapenetpart_txt", "root": str(dummy)}, {"epochs": 1}, dummy / "ps.json",
                           "test", 0, checkpoint=path, device="cpu", log=log)
    if consumer == "semseg":
        return run_semseg(dummy, {"epochs": 1}, dummy / "ss.json", "test", 0, checkpoint=path, device="cpu", log=log)
    raise AssertionError(consumer)


# consumer -> the backbones it takes (partseg is DGCNN's protocol, finetune and semseg PointNeXt's)
CONSUMERS = [("pretrained_backbone", name) for name in BACKBONES] + [("backbone_source", name) for name in BACKBONES] \
    + [("svm", name) for name in BACKBONES] + [("finetune", "pointnext"), ("partseg", "dgcnn"), ("semseg", "pointnext")]


@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("consumer, name", CONSUMERS)
def test_downstream_consumers_refuse_a_partial_checkpoint(tmp_path, consumer: str, name: str, how: str) -> None:
    """Guards every downstream consumer (SVM features, fine-tuning, part and scene segmentation)
    against swallowing or bypassing the whole-checkpoint check: with the intact checkpoint it
    gets past loading (to the missing dataset), with a corrupted one it stops with a
    ValueError naming the file and the tensor."""
    intact, broken, dummy = tmp_path / "intact.pt", tmp_path / "broken.pt", tmp_path / "no_dataset"
    saved_backbone(intact, name)
    if consumer in ("pretrained_backbone", "backbone_source"):
        _run(consumer, name, intact, dummy)
    else:
        with pytest.raises(DatasetError, match="no_dataset"):
            _run(consumer, name, intact, dummy)
    key = corrupt(intact, broken, how)
    with pytest.raises(ValueError) as caught:
        _run(consumer, name, broken, dummy)
    assert_names(caught, broken, key)


def test_scene_segmentation_takes_the_checkpoint_tensors_that_fit(tmp_path) -> None:
    """Guards the by-design partial transfer: the whole checkpoint is loaded first, then every
    segmentation-encoder tensor of the same name and shape is the checkpoint's exactly, and
    the rest (other shapes, the group-all stage) is reported, not an error."""
    path = tmp_path / "pointnext.pt"
    saved_backbone(path, "pointnext")
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    encoder, report = segmentation_encoder(load_backbone(path), seed=0, **TINY_SEG)
    assert report["source"] == "pretrained" and report["counts"]["transferred"] > 0
    assert report["counts"]["unused"] > 0 or report["counts"]["mismatched"] > 0  # partial, by design
    target = encoder.state_dict()
    for name in report["transferred"]:
        assert torch.equal(target[name], state[name]), name


# --------------------------------------------------------------------------------------------
# Figure 4: the backbone state_dict and the whole pre-training model (heads too)
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("how", CORRUPTIONS)
@pytest.mark.parametrize("section, prefix", [("state_dict", ""), ("pretrain_state_dict", "backbone."),
                                             ("pretrain_state_dict", "point_local."),
                                             ("pretrain_state_dict", "image_global.")])
@pytest.mark.parametrize("name", BACKBONES)
def test_figure4_refuses_a_partial_checkpoint(tmp_path, name: str, section: str, prefix: str, how: str) -> None:
    """Guards Figure 4's loader (load_pretrained, and plot_figure4 through it) against a
    non-strict load of the heads or the backbone, or ignoring the backbone state_dict: a
    deleted, extra or reshaped tensor in either is a ValueError naming the file and tensor."""
    intact, broken = tmp_path / "intact.pt", tmp_path / "broken.pt"
    model = saved_pretrain_model(intact, name)
    loaded = load_pretrained(intact).model  # control: the intact checkpoint loads, heads and all
    for key, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], tensor), key
    state = torch.load(intact, map_location="cpu", weights_only=False)[section]
    key = corrupt(intact, broken, how, section, victim(state, prefix))
    with pytest.raises(ValueError) as caught:
        load_pretrained(broken)
    assert_names(caught, broken, key)
    with pytest.raises(ValueError) as caught:
        plot_figure4(broken, [tmp_path / "no_shard.h5"], None, tmp_path / "figure4.png")
    assert_names(caught, broken, key)


@pytest.mark.parametrize("how", ["missing", "misshaped"])
def test_figure4_names_the_tensor_that_gives_the_image_width(tmp_path, how: str) -> None:
    """Guards the one tensor Figure 4 reads before loading (the image feature width): losing
    or flattening it is a ValueError naming the file and tensor, not a raw KeyError."""
    intact, broken = tmp_path / "intact.pt", tmp_path / "broken.pt"
    saved_pretrain_model(intact, "dgcnn")
    key = corrupt(intact, broken, how, "pretrain_state_dict", IMAGE_WIDTH_KEY)
    with pytest.raises(ValueError) as caught:
        load_pretrained(broken)
    assert_names(caught, broken, key)
