"""picat convert: outside checkpoints in and out (picat.convert).

The outside models here are textbook twins written for these tests with the outside codes'
module names and shapes (the official DGCNN's ``conv1``/``bn1`` with each BatchNorm registered
twice, CrossPoint's ``inv_head``, OpenPoints' ``encoder.encoder.<stage>.<block>`` convolutions),
and computed the outside codes' way (channels first, (B, C, S, K) groups, 1x1 convolutions).
An imported checkpoint must reproduce their outputs, round trips must be exact, and a file
that does not fit must be refused naming the tensors.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from dgcnn_reference import get_graph_feature
from test_dgcnn import randomise
from torch import Tensor, nn

import picat
from picat.cli import build_parser, main
from picat.convert.cli import FORMAT_NAMES
from picat.convert.files import export_checkpoint, import_checkpoint
from picat.convert.formats import FORMATS
from picat.models.dgcnn import DGCNN, DGCNNConfig
from picat.models.factory import backbone_checkpoint, build_point_backbone
from picat.models.pointnext import PointNeXtConfig

# ----------------------------------------------------------------------------- helpers


def randomise_all(model: nn.Module, seed: int) -> nn.Module:
    """Random weights, batch-norm scales of both signs, random running statistics and step counts."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(0.5 * torch.randn(parameter.shape, generator=generator))
    randomise(model, seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.num_batches_tracked.fill_(int(torch.randint(1, 1000, (1,), generator=generator)))
    return model


def save(obj: object, path: Path) -> Path:
    torch.save(obj, path)
    return path


def assert_same_tensors(actual: dict[str, Tensor], expected: dict[str, Tensor]) -> None:
    """Same keys, and every tensor equal in shape, dtype and value."""
    assert sorted(actual) == sorted(expected)
    for key, tensor in expected.items():
        assert actual[key].dtype == tensor.dtype, key
        assert torch.equal(actual[key], tensor), key


def cloud(batch: int = 2, n_points: int = 32, seed: int = 3) -> Tensor:
    """(B, N, 3) float64 points in the unit cube."""
    return torch.rand(batch, n_points, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * 2 - 1


class Notes(list):
    """A ``log`` that keeps the lines."""

    def __call__(self, line: str) -> None:
        self.append(line)

    def text(self) -> str:
        return "\n".join(self)


# ----------------------------------------------------------------------------- DGCNN twins


class OfficialStyleDGCNN(nn.Module):
    """The official DGCNN classification model's module tree (names, shapes, order), computed textbook-style.

    ``classifier``: the official head (linear1, bn6, linear2, bn7, linear3); ``projection``:
    CrossPoint's ``inv_head``. Each BatchNorm of the backbone is an attribute and an element
    of its conv Sequential, so the state_dict holds it twice, as in the official code.
    """

    def __init__(self, emb_dims: int, k: int, in_channels: int = 3, classifier: bool = True,
                 projection: bool = False, classes: int = 5) -> None:
        super().__init__()
        self.k = k
        widths = (in_channels, 64, 64, 128, 256)
        for i in range(4):
            setattr(self, f"bn{i + 1}", nn.BatchNorm2d(widths[i + 1]))
        self.bn5 = nn.BatchNorm1d(emb_dims)
        for i in range(4):
            setattr(self, f"conv{i + 1}", nn.Sequential(nn.Conv2d(2 * widths[i], widths[i + 1], 1, bias=False),
                                                        getattr(self, f"bn{i + 1}"), nn.LeakyReLU(0.2)))
        self.conv5 = nn.Sequential(nn.Conv1d(512, emb_dims, 1, bias=False), self.bn5, nn.LeakyReLU(0.2))
        if classifier:
            self.linear1 = nn.Linear(2 * emb_dims, 512, bias=False)
            self.bn6 = nn.BatchNorm1d(512)
            self.linear2 = nn.Linear(512, 256)
            self.bn7 = nn.BatchNorm1d(256)
            self.linear3 = nn.Linear(256, classes)
        if projection:
            self.inv_head = nn.Sequential(nn.Linear(2 * emb_dims, emb_dims), nn.BatchNorm1d(emb_dims),
                                          nn.ReLU(inplace=True), nn.Linear(emb_dims, 256))

    def features(self, points: Tensor) -> Tensor:
        """(B, N, C_in) -> (B, 2 * emb_dims): concat(max, mean) over points of conv5's output."""
        x = points.transpose(1, 2)
        levels = []
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            x = conv(get_graph_feature(x, self.k)).max(dim=-1)[0]
            levels.append(x)
        x = self.conv5(torch.cat(levels, dim=1))
        return torch.cat([x.amax(dim=-1), x.mean(dim=-1)], dim=1)


HEAD_PREFIXES = ("linear", "bn6", "bn7", "inv_head")


def backbone_part(state: dict[str, Tensor]) -> dict[str, Tensor]:
    return {key: value for key, value in state.items() if not key.startswith(HEAD_PREFIXES)}


@pytest.fixture
def official() -> OfficialStyleDGCNN:
    torch.manual_seed(0)
    return randomise_all(OfficialStyleDGCNN(emb_dims=24, k=6), seed=0).eval()


def test_format_names_match_the_registry() -> None:
    assert tuple(FORMATS) == FORMAT_NAMES
    assert {layout.backbone for layout in FORMATS.values()} == {"dgcnn", "pointnext"}


def test_official_state_dict_holds_each_batch_norm_twice(official: OfficialStyleDGCNN) -> None:
    state = official.state_dict()
    assert torch.equal(state["bn1.weight"], state["conv1.1.weight"])
    assert "conv5.1.running_var" in state and "bn5.running_var" in state


@pytest.mark.parametrize("data_parallel", [True, False], ids=["module-prefix", "bare"])
def test_official_import_reproduces_the_official_features(official: OfficialStyleDGCNN, tmp_path: Path,
                                                           data_parallel: bool) -> None:
    state = official.state_dict()
    if data_parallel:  # as the official main.py saves it, from nn.DataParallel
        state = {f"module.{key}": value for key, value in state.items()}
    source = save(state, tmp_path / "model.t7")
    notes = Notes()
    import_checkpoint(source, tmp_path / "picat.pt", "dgcnn-official", {"k": 6}, log=notes)

    backbone = picat.load_backbone(tmp_path / "picat.pt")
    assert isinstance(backbone, DGCNN)
    assert backbone.config == DGCNNConfig(k=6, emb_dims=24, in_channels=3)
    assert backbone.picat_metadata["normals"] is False
    points = cloud()
    with torch.no_grad():
        expected = official.double().features(points)
        got = backbone.double()(points)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    # Every head tensor is dropped, and said so.
    dropped = backbone.picat_metadata["converted_from"]["dropped"]
    assert sorted(dropped) == sorted(key for key in official.state_dict() if key.startswith(("linear", "bn6", "bn7")))
    assert "dropped 15 tensor(s)" in notes.text() and "linear3.{weight, bias}" in notes.text()
    assert ("stripped the DataParallel prefix" in notes.text()) == data_parallel

    # The comparison can fail: one batch norm's scale changed changes the features.
    with torch.no_grad():
        backbone.edge_convs[2].bn.weight.mul_(-1)
        assert not torch.allclose(backbone(points), expected, atol=1e-3)


def test_official_import_then_export_gives_the_same_file(official: OfficialStyleDGCNN, tmp_path: Path) -> None:
    source = save(official.state_dict(), tmp_path / "model.t7")
    import_checkpoint(source, tmp_path / "picat.pt", "dgcnn-official", {"k": 6}, log=Notes())
    export_checkpoint(tmp_path / "picat.pt", tmp_path / "back.t7", "dgcnn-official", log=Notes())
    back = torch.load(tmp_path / "back.t7", weights_only=True)
    assert_same_tensors(back, backbone_part(official.state_dict()))
    # It loads into the outside model (its head left as it was).
    fresh = OfficialStyleDGCNN(emb_dims=24, k=6)
    incompatible = fresh.load_state_dict(back, strict=False)
    assert not incompatible.unexpected_keys
    # (load_state_dict does not report a batch norm's absent step counter.)
    assert sorted(incompatible.missing_keys) == sorted(key for key in fresh.state_dict() if key.startswith(
        ("linear", "bn6", "bn7")) and not key.endswith("num_batches_tracked"))


@pytest.mark.parametrize("format_name", ["dgcnn-official", "crosspoint"])
def test_picat_dgcnn_export_then_import_is_exact(format_name: str, tmp_path: Path) -> None:
    options = {"k": 5, "emb_dims": 16, "local_centres": 8}
    torch.manual_seed(1)
    model = randomise_all(build_point_backbone("dgcnn", options), seed=1)
    save(backbone_checkpoint("dgcnn", options, False, "z", model, {"variant": "full"}), tmp_path / "picat.pt")
    notes = Notes()
    export_checkpoint(tmp_path / "picat.pt", tmp_path / "outside.pth", format_name, log=notes)
    assert "k=5, emb_dims=16" in notes.text()
    import_checkpoint(tmp_path / "outside.pth", tmp_path / "again.pt", format_name,
                      {"k": 5, "local_centres": 8, "up_axis": "z"}, log=Notes())
    again = torch.load(tmp_path / "again.pt", weights_only=False)
    assert again["options"] == {"k": 5, "local_centres": 8, "emb_dims": 16, "edge_channels": [64, 64, 128, 256]}
    assert (again["backbone"], again["normals"], again["up_axis"]) == ("dgcnn", False, "z")
    assert_same_tensors(again["state_dict"], model.state_dict())


def test_normals_inferred_from_the_first_conv(tmp_path: Path) -> None:
    torch.manual_seed(2)
    outside = randomise_all(OfficialStyleDGCNN(emb_dims=8, k=4, in_channels=6), seed=2).eval()
    import_checkpoint(save(outside.state_dict(), tmp_path / "n.t7"), tmp_path / "n.pt", "dgcnn-official",
                      {"k": 4}, log=Notes())
    backbone = picat.load_backbone(tmp_path / "n.pt")
    assert backbone.picat_metadata["normals"] is True and backbone.config.in_channels == 6
    points = torch.cat([cloud(n_points=16), F.normalize(cloud(n_points=16, seed=4), dim=-1)], dim=-1)
    with torch.no_grad():
        torch.testing.assert_close(backbone.double()(points), outside.double().features(points))


def test_crosspoint_import_keeps_the_backbone_and_drops_the_projection(tmp_path: Path) -> None:
    torch.manual_seed(3)
    crosspoint = randomise_all(OfficialStyleDGCNN(emb_dims=16, k=5, classifier=False, projection=True), 3).eval()
    source = save(crosspoint.state_dict(), tmp_path / "best_model.pth")
    notes = Notes()
    import_checkpoint(source, tmp_path / "picat.pt", "crosspoint", {"k": 5}, log=notes)
    assert "inv_head.0.{weight, bias}" in notes.text() and "inv_head.3.{weight, bias}" in notes.text()
    backbone = picat.load_backbone(tmp_path / "picat.pt")
    points = cloud(n_points=20)
    with torch.no_grad():
        torch.testing.assert_close(backbone.double()(points), crosspoint.double().features(points))
    export_checkpoint(tmp_path / "picat.pt", tmp_path / "back.pth", "crosspoint", log=Notes())
    assert_same_tensors(torch.load(tmp_path / "back.pth", weights_only=True),
                        backbone_part(torch.load(source, weights_only=True)))
    # The official format does not know the projection head: it refuses it by name.
    with pytest.raises(ValueError, match=r"unexpected tensor\(s\): inv_head\.0\.weight, inv_head\.0\.bias"):
        import_checkpoint(source, tmp_path / "other.pt", "dgcnn-official", {"k": 5}, log=Notes())


def test_either_name_of_a_batch_norm_is_enough(official: OfficialStyleDGCNN, tmp_path: Path) -> None:
    state = {key: value for key, value in official.state_dict().items() if not key.startswith("conv1.1.")}
    state = {key: value for key, value in state.items() if not key.startswith("bn2.")}
    import_checkpoint(save(state, tmp_path / "m.t7"), tmp_path / "p.pt", "dgcnn-official", {"k": 6}, log=Notes())
    loaded = torch.load(tmp_path / "p.pt", weights_only=False)["state_dict"]
    assert torch.equal(loaded["edge_convs.0.bn.weight"], official.bn1.weight.detach())
    assert torch.equal(loaded["edge_convs.1.bn.running_var"], official.bn2.running_var)


def test_absent_step_counters_become_zero(official: OfficialStyleDGCNN, tmp_path: Path) -> None:
    state = {key: value for key, value in official.state_dict().items() if not key.endswith("num_batches_tracked")}
    notes = Notes()
    import_checkpoint(save(state, tmp_path / "old.t7"), tmp_path / "p.pt", "dgcnn-official", {"k": 6}, log=notes)
    assert "5 BatchNorm step counter(s)" in notes.text()
    assert int(torch.load(tmp_path / "p.pt", weights_only=False)["state_dict"]["embed_bn.num_batches_tracked"]) == 0


def _edit(state: dict[str, Tensor], drop: tuple[str, ...] = (), put: dict[str, Tensor] | None = None) -> dict:
    state = {key: value for key, value in state.items() if key not in drop}
    return {**state, **(put or {})}


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: _edit(s, drop=("bn3.running_var", "conv3.1.running_var")),
         r"missing tensor\(s\): bn3\.running_var$|missing tensor\(s\): bn3\.running_var\)"),
        (lambda s: _edit(s, drop=("conv4.0.weight",)), r"missing tensor\(s\): conv4\.0\.weight"),
        (lambda s: _edit(s, put={"extra.weight": torch.zeros(3), "bn9.bias": torch.zeros(3)}),
         r"unexpected tensor\(s\): extra\.weight, bn9\.bias"),
        (lambda s: _edit(s, put={"bn2.weight": torch.ones(63), "conv2.1.weight": torch.ones(63)}),
         r"mis-shaped tensor\(s\): bn2\.weight \(63,\) \(needs \(64,\)\), conv2\.1\.weight \(63,\)"),
        (lambda s: _edit(s, put={"conv3.0.weight": torch.ones(128, 128, 1)}),
         r"mis-shaped tensor\(s\): conv3\.0\.weight \(128, 128, 1\) \(needs \(128, 128, 1, 1\)\)"),
        (lambda s: _edit(s, put={"conv1.1.bias": s["bn1.bias"] + 1}),
         r"should be one and the same differ: bn1\.bias vs conv1\.1\.bias"),
        (lambda s: _edit(s, put={"conv1.0.weight": torch.ones(64, 8, 1, 1)}), r"3 \(xyz\) or 6 \(xyz \+ normals\)"),
    ],
    ids=["missing-both-names", "missing", "unexpected", "mis-shaped", "wrong-rank", "aliases-differ", "in-channels"],
)
def test_a_checkpoint_that_does_not_fit_is_refused_naming_the_tensors(official: OfficialStyleDGCNN, tmp_path: Path,
                                                                      edit, match: str) -> None:
    source = save(edit(official.state_dict()), tmp_path / "bad.t7")
    with pytest.raises(ValueError, match=match) as error:
        import_checkpoint(source, tmp_path / "out.pt", "dgcnn-official", {"k": 6}, log=Notes())
    assert "\n" not in str(error.value)  # one line (picat's CLI prints it as is)
    assert not (tmp_path / "out.pt").exists()
    assert [path.name for path in tmp_path.iterdir()] == ["bad.t7"]  # no temporary left behind


def test_options_the_shapes_decide_are_refused(official: OfficialStyleDGCNN, tmp_path: Path) -> None:
    source = save(official.state_dict(), tmp_path / "m.t7")
    with pytest.raises(ValueError, match="shapes decide"):
        import_checkpoint(source, tmp_path / "p.pt", "dgcnn-official", {"emb_dims": 1024}, log=Notes())
    with pytest.raises(ValueError, match="kk: unknown setting"):
        import_checkpoint(source, tmp_path / "p.pt", "dgcnn-official", {"kk": 3}, log=Notes())


def test_not_a_state_dict_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neither a state_dict"):
        import_checkpoint(save({"epoch": 3, "args": {"k": 20}}, tmp_path / "x.pth"), tmp_path / "p.pt",
                          "dgcnn-official", log=Notes())
    (tmp_path / "junk.pth").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="torch.load reads"):
        import_checkpoint(tmp_path / "junk.pth", tmp_path / "p.pt", "dgcnn-official", log=Notes())
    with pytest.raises(FileNotFoundError):
        import_checkpoint(tmp_path / "absent.pth", tmp_path / "p.pt", "dgcnn-official", log=Notes())
    with pytest.raises(ValueError, match="unknown checkpoint format 'pointnet'"):
        import_checkpoint(tmp_path / "x.pth", tmp_path / "p.pt", "pointnet", log=Notes())


# ----------------------------------------------------------------------------- OpenPoints PointNeXt twin


def textbook_fps(xyz: Tensor, n_samples: int) -> Tensor:
    """(B, N, 3) -> (B, S) farthest point sampling from point 0 (the CUDA kernel's start)."""
    batch = xyz.shape[0]
    picked = torch.zeros(batch, n_samples, dtype=torch.long)
    nearest = torch.full(xyz.shape[:2], math.inf, dtype=xyz.dtype)
    rows = torch.arange(batch)
    for i in range(1, n_samples):
        latest = xyz[rows, picked[:, i - 1]]  # (B, 3)
        nearest = torch.minimum(nearest, ((xyz - latest[:, None]) ** 2).sum(-1))
        picked[:, i] = nearest.argmax(-1)
    return picked


def textbook_ball_query(radius: float, k: int, xyz: Tensor, centres: Tensor) -> Tensor:
    """(B, S, K) the first K points (by index) strictly inside each ball, padded with the first."""
    n_points = xyz.shape[1]
    inside = ((centres[:, :, None] - xyz[:, None]) ** 2).sum(-1) < radius**2  # (B, S, N)
    index = torch.arange(n_points)
    order = torch.where(inside, index, n_points + index).sort(-1).values[..., :k]
    return torch.where(order < n_points, order, order[..., :1])


def group(values: Tensor, idx: Tensor) -> Tensor:
    """(B, C, N) channels-first values at (B, S, K) indices -> (B, C, S, K)."""
    batch, channels, _ = values.shape
    flat = idx.reshape(batch, 1, -1).expand(-1, channels, -1)
    return values.gather(2, flat).view(batch, channels, *idx.shape[1:])


def conv_bn(c_in: int, c_out: int, act: bool, dims: int = 2) -> nn.Sequential:
    conv, norm = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv1d, nn.BatchNorm1d)
    return nn.Sequential(conv(c_in, c_out, 1, bias=False), norm(c_out), *([nn.ReLU()] if act else []))


class TwinStem(nn.Module):
    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(nn.Sequential(nn.Conv1d(c_in, c_out, 1)))

    def forward(self, p: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
        return p, self.convs(f)


class TwinSetAbstraction(nn.Module):
    """Residual set abstraction (sa_use_res), or the group-all stage (``radius`` None)."""

    def __init__(self, c_in: int, c_out: int, layers: int, stride: int, radius: float | None, k: int) -> None:
        super().__init__()
        self.stride, self.radius, self.k = stride, radius, k
        mid = c_out // 2 if stride > 1 else c_out
        widths = [c_in + 3] + [mid] * (layers - 1) + [c_out]
        group_all = radius is None
        self.convs = nn.Sequential(*(conv_bn(a, b, act=group_all or i < layers - 1)
                                     for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))))
        if not group_all:
            self.skipconv = nn.Sequential(nn.Conv1d(c_in, c_out, 1))

    def forward(self, p: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
        if self.radius is None:
            grouped = torch.cat([p.transpose(1, 2).unsqueeze(2), f.unsqueeze(2)], dim=1)  # (B, 3 + C, 1, N)
            return p, self.convs(grouped).max(dim=-1)[0]
        keep = textbook_fps(p, p.shape[1] // self.stride)
        centres = p.gather(1, keep[..., None].expand(-1, -1, 3))
        identity = self.skipconv(f.gather(2, keep[:, None].expand(-1, f.shape[1], -1)))
        idx = textbook_ball_query(self.radius, self.k, p, centres)
        dp = (group(p.transpose(1, 2), idx) - centres.transpose(1, 2)[..., None]) / self.radius
        pooled = self.convs(torch.cat([dp, group(f, idx)], dim=1)).max(dim=-1)[0]
        return centres, F.relu(pooled + identity)


class TwinLocalAggregation(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(conv_bn(channels + 3, channels, act=True))


class TwinInvResMLP(nn.Module):
    def __init__(self, channels: int, radius: float, k: int, expansion: int) -> None:
        super().__init__()
        self.radius, self.k = radius, k
        self.convs = TwinLocalAggregation(channels)
        self.pwconv = nn.Sequential(conv_bn(channels, channels * expansion, True, dims=1),
                                    conv_bn(channels * expansion, channels, False, dims=1))

    def forward(self, p: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
        idx = textbook_ball_query(self.radius, self.k, p, p)
        dp = (group(p.transpose(1, 2), idx) - p.transpose(1, 2)[..., None]) / self.radius
        pooled = self.convs.convs(torch.cat([dp, group(f, idx)], dim=1)).max(dim=-1)[0]
        return p, F.relu(self.pwconv(pooled) + f)


class TwinPointNextEncoder(nn.Module):
    """OpenPoints' PointNextEncoder tree (``encoder.<stage>.<block>``), PointNeXt-S style (sa_use_res)."""

    def __init__(self, in_channels: int, width: int, blocks: tuple[int, ...], strides: tuple[int, ...],
                 radius: float, scaling: float, k: int, sa_layers: int = 2, expansion: int = 4) -> None:
        super().__init__()
        stages, c_in = [], in_channels
        for i, (n_blocks, stride) in enumerate(zip(blocks, strides, strict=True)):
            c_out = width * 2 ** sum(s > 1 for s in strides[:i + 1])
            if i == 0:
                first: nn.Module = TwinStem(c_in, c_out)
            elif i == len(blocks) - 1:
                first = TwinSetAbstraction(c_in, c_out, sa_layers, 1, None, k)
            else:
                first = TwinSetAbstraction(c_in, c_out, sa_layers, stride, radius, k)
            # OpenPoints' radius list: a down-sampling stage's later blocks use the next radius.
            later = radius * scaling if stride > 1 else radius
            stages.append(nn.Sequential(first, *(TwinInvResMLP(c_out, later, k, expansion)
                                                 for _ in range(n_blocks - 1))))
            radius = later
            c_in = c_out
        self.encoder = nn.Sequential(*stages)

    def forward_cls_feat(self, points: Tensor) -> Tensor:
        """(B, N, 3) -> (B, C): input features [xyz, height] (Y up), as OpenPoints' ScanObjectNN ``x``."""
        height = points[..., 1:2] - points[..., 1:2].amin(dim=1, keepdim=True)
        p, f = points, torch.cat([points, height], dim=-1).transpose(1, 2)
        for stage in self.encoder:
            for block in stage:
                p, f = block(p, f)
        return f.squeeze(-1)


class TwinClsHead(nn.Module):
    def __init__(self, c_in: int, classes: int) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Sequential(nn.Linear(c_in, 16, bias=False), nn.BatchNorm1d(16), nn.ReLU()),
                                  nn.Dropout(0.5), nn.Sequential(nn.Linear(16, classes)))


class TwinBaseCls(nn.Module):
    """OpenPoints' BaseCls: ``encoder`` and ``prediction``."""

    def __init__(self, encoder: TwinPointNextEncoder, classes: int = 4) -> None:
        super().__init__()
        self.encoder = encoder
        self.prediction = TwinClsHead(encoder.encoder[-1][0].convs[-1][0].out_channels, classes)


TWIN = {"in_channels": 4, "width": 8, "blocks": (1, 2, 1, 1, 1, 1), "strides": (1, 2, 2, 2, 2, 1),
        "radius": 0.4, "scaling": 1.5, "k": 8}
TWIN_OPTIONS = {"radius": 0.4, "radius_scaling": 1.5, "nsample": 8}


@pytest.fixture
def openpoints() -> TwinBaseCls:
    torch.manual_seed(4)
    return randomise_all(TwinBaseCls(TwinPointNextEncoder(**TWIN)), seed=4).eval()


def openpoints_file(model: TwinBaseCls, path: Path) -> Path:
    """As OpenPoints' save_checkpoint writes it."""
    return save({"model": model.state_dict(), "optimizer": {}, "scheduler": {}, "epoch": 7}, path)


def test_openpoints_import_reproduces_the_encoder(openpoints: TwinBaseCls, tmp_path: Path) -> None:
    notes = Notes()
    import_checkpoint(openpoints_file(openpoints, tmp_path / "ckpt_best.pth"), tmp_path / "picat.pt",
                      "openpoints-pointnext", TWIN_OPTIONS, log=notes)
    backbone = picat.load_backbone(tmp_path / "picat.pt")
    assert backbone.config == PointNeXtConfig(width=8, blocks=(1, 2, 1, 1, 1, 1), radius=0.4, nsample=8)
    assert "read the state_dict under 'model'" in notes.text()
    assert "prediction.head.0.0.weight" in notes.text() and "prediction.head.2.0.{weight, bias}" in notes.text()
    assert "normalize_dp True" in notes.text()  # a setting no tensor holds, taken from PointNeXt-S
    points = cloud(n_points=64, seed=5)
    with torch.no_grad():
        expected = openpoints.double().encoder.forward_cls_feat(points)
        got = backbone.double()(points)
    assert got.shape == (2, 128)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    with torch.no_grad():  # the comparison can fail
        backbone.stages[1][1].pointwise[4].bias.add_(1)
        assert not torch.allclose(backbone(points), expected, atol=1e-3)


def test_openpoints_round_trips_are_exact(openpoints: TwinBaseCls, tmp_path: Path) -> None:
    import_checkpoint(openpoints_file(openpoints, tmp_path / "in.pth"), tmp_path / "picat.pt",
                      "openpoints-pointnext", TWIN_OPTIONS, log=Notes())
    notes = Notes()
    export_checkpoint(tmp_path / "picat.pt", tmp_path / "out.pth", "openpoints-pointnext", log=notes)
    assert "sa_use_res True, radius 0.4" in notes.text()
    written = torch.load(tmp_path / "out.pth", weights_only=True)
    assert list(written) == ["model"]
    expected = {key: value for key, value in openpoints.state_dict().items() if key.startswith("encoder.")}
    assert_same_tensors(written["model"], expected)
    # picat -> OpenPoints -> picat, from a bare PointNextEncoder's state_dict too (no BaseCls).
    bare = {key.removeprefix("encoder."): value for key, value in written["model"].items()}
    import_checkpoint(save(bare, tmp_path / "bare.pth"), tmp_path / "again.pt", "openpoints-pointnext",
                      TWIN_OPTIONS, log=Notes())
    first = torch.load(tmp_path / "picat.pt", weights_only=False)
    again = torch.load(tmp_path / "again.pt", weights_only=False)
    assert again["options"] == first["options"]
    assert_same_tensors(again["state_dict"], first["state_dict"])


def test_picat_pointnext_export_then_import_is_exact(tmp_path: Path) -> None:
    options = {"width": 8, "blocks": [1, 1, 2, 1, 1, 1], "use_height": False, "radius": 0.2}
    torch.manual_seed(5)
    model = randomise_all(build_point_backbone("pointnext", options, normals=True, up_axis="z"), seed=5)
    save(backbone_checkpoint("pointnext", options, True, "z", model, {}), tmp_path / "picat.pt")
    export_checkpoint(tmp_path / "picat.pt", tmp_path / "op.pth", "openpoints-pointnext", log=Notes())
    import_checkpoint(tmp_path / "op.pth", tmp_path / "again.pt", "openpoints-pointnext",
                      {"radius": 0.2, "up_axis": "z"}, log=Notes())
    again = torch.load(tmp_path / "again.pt", weights_only=False)
    assert (again["normals"], again["up_axis"], again["options"]["use_height"]) == (True, "z", False)
    assert_same_tensors(again["state_dict"], model.state_dict())


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: _edit(s, drop=("encoder.encoder.3.0.convs.1.1.running_mean",)),
         r"missing tensor\(s\): encoder\.3\.0\.convs\.1\.1\.running_mean"),
        (lambda s: _edit(s, put={"encoder.encoder.2.0.skipconv.0.weight": torch.ones(32, 16)}),
         r"mis-shaped tensor\(s\): encoder\.2\.0\.skipconv\.0\.weight \(32, 16\) \(needs \(32, 16, 1\)\)"),
        (lambda s: _edit(s, put={"encoder.encoder.1.0.convs.0.2.weight": torch.ones(8)}),
         r"unexpected tensor\(s\): encoder\.1\.0\.convs\.0\.2\.weight"),
        # A block more in the key names is a block more in the inferred encoder: its tensors are missing.
        (lambda s: _edit(s, put={"encoder.encoder.1.2.convs.convs.0.0.weight": torch.ones(16, 19, 1, 1)}),
         r"missing tensor\(s\): encoder\.1\.2\.convs\.convs\.0\.1\.weight, .* encoder\.1\.2\.pwconv\.0\.0"),
        (lambda s: {k: v for k, v in s.items() if ".skipconv." not in k}, "sa_use_res: False"),
        (lambda s: {k: v for k, v in s.items() if not k.startswith("encoder.encoder.0.")}, "needs a stem"),
    ],
    ids=["missing", "mis-shaped", "unexpected", "extra-block", "no-residual-set-abstraction", "no-stem"],
)
def test_an_openpoints_checkpoint_that_does_not_fit_is_refused(openpoints: TwinBaseCls, tmp_path: Path,
                                                               edit, match: str) -> None:
    source = save({"model": edit(openpoints.state_dict())}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match=match):
        import_checkpoint(source, tmp_path / "out.pt", "openpoints-pointnext", TWIN_OPTIONS, log=Notes())
    assert not (tmp_path / "out.pt").exists()


def test_export_refuses_another_backbone(tmp_path: Path) -> None:
    model = build_point_backbone("pointnext", {"width": 8})
    save(backbone_checkpoint("pointnext", {"width": 8}, False, "y", model, {}), tmp_path / "p.pt")
    with pytest.raises(ValueError, match="holds a pointnext backbone; the dgcnn-official format holds a dgcnn"):
        export_checkpoint(tmp_path / "p.pt", tmp_path / "o.t7", "dgcnn-official", log=Notes())
    with pytest.raises(ValueError, match="not a picat checkpoint"):
        export_checkpoint(save({"a": torch.zeros(1)}, tmp_path / "x.pt"), tmp_path / "o.t7", "crosspoint",
                          log=Notes())


# ----------------------------------------------------------------------------- CLI


def parser() -> argparse.ArgumentParser:
    """The `picat` command's own parser, so that these tests cover its wiring too."""
    return build_parser()


def test_picat_main_reports_a_bad_file_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["convert", str(tmp_path / "absent.t7"), str(tmp_path / "out.pt"), "--from", "crosspoint"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("picat convert: error:") and "absent.t7" in error and "\n" not in error
    assert not (tmp_path / "out.pt").exists()


def test_cli_end_to_end(official: OfficialStyleDGCNN, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = save({f"module.{k}": v for k, v in official.state_dict().items()}, tmp_path / "model.1024.t7")
    args = parser().parse_args(["convert", str(source), str(tmp_path / "picat.pt"), "--from", "dgcnn-official",
                                "--option", "k=6", "--option", "local_centres=4"])
    args.run(args)
    printed = capsys.readouterr().out
    assert "dropped 15 tensor(s)" in printed and "wrote" in printed
    backbone = picat.load_backbone(tmp_path / "picat.pt", local=True)
    assert backbone.backbone.config.local_centres == 4
    global_feature, local, centres = backbone(cloud().float())
    assert global_feature.shape == (2, 48) and local.shape == (2, 24, 4) and centres.shape == (2, 4, 3)

    args = parser().parse_args(["convert", str(tmp_path / "picat.pt"), str(tmp_path / "back.t7"),
                                "--to", "dgcnn-official"])
    args.run(args)
    assert "--k 6 --emb_dims 24" in capsys.readouterr().out
    assert_same_tensors(torch.load(tmp_path / "back.t7", weights_only=True), backbone_part(official.state_dict()))


def test_cli_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for argv in (["convert", "a", "b"],  # neither --from nor --to
                 ["convert", "a", "b", "--from", "crosspoint", "--to", "crosspoint"],
                 ["convert", "a", "b", "--from", "pointnet"],
                 ["convert", "a", "b", "--from", "crosspoint", "--option", "k"]):
        with pytest.raises(SystemExit):
            parser().parse_args(argv)
    capsys.readouterr()
    args = parser().parse_args(["convert", "a", "b", "--to", "crosspoint", "--option", "k=3"])
    with pytest.raises(ValueError, match="an export"):
        args.run(args)
    args = parser().parse_args(["convert", "a", "b", "--from", "crosspoint", "--option", "k=3", "--option", "k=4"])
    with pytest.raises(ValueError, match="k given twice"):
        args.run(args)


# ----------------------------------------------------------------------------- the stock models' shapes


def test_default_backbones_export_to_the_stock_shapes(tmp_path: Path) -> None:
    """picat's defaults are the stock models: the official DGCNN (emb_dims 1024) and OpenPoints' PointNeXt-S."""
    for name, format_name in (("dgcnn", "dgcnn-official"), ("pointnext", "openpoints-pointnext")):
        model = build_point_backbone(name, {})
        save(backbone_checkpoint(name, {}, False, "y", model, {}), tmp_path / f"{name}.pt")
        export_checkpoint(tmp_path / f"{name}.pt", tmp_path / f"{name}.pth", format_name, log=Notes())
    dgcnn = torch.load(tmp_path / "dgcnn.pth", weights_only=True)
    assert len(dgcnn) == 5 * (1 + 2 * 5)  # 5 convs, 5 batch norms of 5 tensors under 2 names each
    shapes = {key: tuple(value.shape) for key, value in dgcnn.items()}
    assert shapes["conv1.0.weight"] == (64, 6, 1, 1) and shapes["conv4.0.weight"] == (256, 256, 1, 1)
    assert shapes["conv5.0.weight"] == (1024, 512, 1) and shapes["bn5.running_var"] == (1024,)
    pointnext = {key: tuple(value.shape) for key, value in
                 torch.load(tmp_path / "pointnext.pth", weights_only=True)["model"].items()}
    assert pointnext["encoder.encoder.0.0.convs.0.0.weight"] == (32, 4, 1)  # xyz + height
    assert pointnext["encoder.encoder.0.0.convs.0.0.bias"] == (32,)
    assert pointnext["encoder.encoder.1.0.convs.0.0.weight"] == (32, 35, 1, 1)  # [dp, f] -> out / 2
    assert pointnext["encoder.encoder.1.0.convs.1.0.weight"] == (64, 32, 1, 1)
    assert pointnext["encoder.encoder.1.0.skipconv.0.weight"] == (64, 32, 1)
    assert pointnext["encoder.encoder.4.0.convs.1.1.running_mean"] == (512,)
    assert pointnext["encoder.encoder.5.0.convs.0.0.weight"] == (512, 515, 1, 1)  # group-all on [xyz, f]
    assert pointnext["encoder.encoder.5.0.convs.1.0.weight"] == (512, 512, 1, 1)
    assert not any(key.startswith("encoder.encoder.5.0.skipconv") for key in pointnext)
