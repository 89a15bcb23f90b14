"""Training and evaluating a scene segmenter on S3DIS (Table 5), for any network called as
``model(xyz (B, N, 3) metres z-up, colours (B, N, 3) float32) -> logits (B, N, 13)``.

The recipe is PointNeXt's S3DIS one (guochengqian/PointNeXt cfgs/s3dis/default.yaml and
pointnext-s.yaml; see ../shared/notes/protocols.md): Area 5 held out, 100 epochs in which each
training room gives ``crops_per_room`` (PointNeXt's ``loop``, 30) crops, batch 32, AdamW
(lr 0.01, weight decay 1e-4) with a cosine schedule down to 1e-5, label smoothing 0.2,
gradient clipping at 10.

A training crop: one random point per 0.04 m voxel of the room, then the 24000 of those
nearest to a random one of them; a smaller room is padded to 24000 by repeating random points
of it (as PointNeXt does for batched crops), so crops stack into a fixed-size batch without
gradient accumulation; the repeats weigh those points a little more in the loss, as there.

Inputs (train and test alike, :func:`scene_inputs`): xyz with x and y centred on their mean
and z measured from the lowest point (PointNeXt's ``PointCloudFloorCentering``); colours
scaled to [0, 1] and standardised with S3DIS's channel means and deviations
(``ChromaticNormalize``). Training augmentation, the subset of PointNeXt-S's list kept here:
chromatic auto-contrast (probability 0.2, random blend), colour drop (probability 0.2: all
colours of the crop set to black), anisotropic scaling U(0.9, 1.1) about the floor centre and
Gaussian jitter (sigma 0.005 m clipped at 0.02 m). No rotation (PointNeXt-S uses none).

Whole-scene test: each test room is split by :func:`picat.downstream.scenes.whole_scene_subclouds`
into sub-clouds of one point per voxel that together hold every point; each sub-cloud goes
through the model whole (no crop, one per forward); the logits of every original point are
averaged over the sub-clouds it was in, and the argmax is scored against every original point.
No selection on test: the model reported is the one after the last epoch.

With a run folder, a per-epoch resume state lets a killed job continue (:mod:`picat.resume`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from picat.accelerator import autocast, prepare_device
from picat.datasets.s3dis import S3DIS_CLASSES, Room
from picat.downstream.dense import Batch, checked_logits, train_dense
from picat.downstream.scenes import VoxelGrid, build_voxel_grid, crop_nearest, pad_by_resampling, whole_scene_subclouds
from picat.downstream.seg_metrics import confusion_matrix, scene_segmentation_scores
from picat.downstream.settings import check_training_settings, settings_from_block
from picat.resume import RESUME_FILE, ResumeFile, weights_fingerprint
from picat.training_log import LoggingSpec, TrainingLog

N_CLASSES = len(S3DIS_CLASSES)
# S3DIS colour statistics (in [0, 1]) that PointNeXt's ChromaticNormalize standardises with.
COLOR_MEAN = np.array([0.5136457, 0.49523646, 0.44921124], dtype=np.float32)
COLOR_STD = np.array([0.18308958, 0.18415008, 0.19252081], dtype=np.float32)
_KEY = "downstream.semseg"


@dataclass(frozen=True)
class SemSegSettings:
    """The scene-segmentation protocol's settings (the config's ``downstream.semseg`` block)."""

    epochs: int = 100
    batch_size: int = 32
    voxel_size: float = 0.04
    max_points: int = 24000
    crops_per_room: int = 30
    lr: float = 0.01
    min_lr: float = 1e-5
    weight_decay: float = 1e-4
    label_smoothing: float = 0.2
    grad_clip: float = 10.0  # 0 = no clipping
    scale_range: tuple[float, float] = (0.9, 1.1)
    jitter_sigma: float = 0.005
    jitter_clip: float = 0.02
    auto_contrast: float = 0.2  # probability per crop
    color_drop: float = 0.2  # probability per crop
    test_area: int = 5

    def __post_init__(self) -> None:
        check_training_settings(self, _KEY, ("epochs", "batch_size", "max_points", "crops_per_room", "test_area"))
        if not self.voxel_size > 0:
            raise ValueError(f"{_KEY}.voxel_size must be positive (metres), got {self.voxel_size}")
        for name in ("auto_contrast", "color_drop"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{_KEY}.{name} is a probability, got {getattr(self, name)}")
        if min(self.grad_clip, self.weight_decay, self.jitter_sigma, self.jitter_clip) < 0:
            raise ValueError(f"{_KEY}: grad_clip, weight_decay, jitter_sigma and jitter_clip must be >= 0")

    @classmethod
    def of(cls, block: dict[str, Any]) -> SemSegSettings:
        """From the config's ``downstream.semseg`` block."""
        return settings_from_block(cls, block, _KEY)


def scene_inputs(points: np.ndarray, colors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The normalisation shared by training crops and test sub-clouds.

    Args:
        points: (N, 3) xyz in metres, z up.
        colors: (N, 3) rgb in [0, 255].

    Returns:
        xyz (N, 3) float32 with x, y centred on their mean and z from the lowest point;
        colours (N, 3) float32 standardised by S3DIS's channel statistics.
    """
    points, colors = np.asarray(points), np.asarray(colors)
    if points.ndim != 2 or points.shape[1] != 3 or colors.shape != points.shape or len(points) == 0:
        raise ValueError(f"expected (N, 3) points and (N, 3) colours, got {points.shape} and {colors.shape}")
    xyz = points.astype(np.float32)
    xyz = xyz - np.r_[xyz[:, :2].mean(axis=0), xyz[:, 2].min()].astype(np.float32)
    colours = (colors.astype(np.float32) / 255.0 - COLOR_MEAN) / COLOR_STD
    return xyz, colours.astype(np.float32)


def augment_colors(colors: np.ndarray, settings: SemSegSettings, rng: np.random.Generator) -> np.ndarray:
    """Chromatic auto-contrast and colour drop of one crop's (N, 3) [0, 255] colours."""
    colors = colors.astype(np.float32)
    if rng.random() < settings.auto_contrast:
        low, high = colors.min(axis=0), colors.max(axis=0)
        stretched = (colors - low) * (255.0 / np.maximum(high - low, 1e-6))
        blend = rng.random()
        colors = (1 - blend) * colors + blend * stretched
    if rng.random() < settings.color_drop:
        colors = np.zeros_like(colors)
    return colors


def augment_xyz(xyz: np.ndarray, settings: SemSegSettings, rng: np.random.Generator) -> np.ndarray:
    """Anisotropic scaling about the floor centre and clipped Gaussian jitter; (N, 3) -> same."""
    low, high = settings.scale_range
    scaled = xyz * rng.uniform(low, high, size=3).astype(np.float32)
    jitter = np.clip(settings.jitter_sigma * rng.standard_normal(xyz.shape), -settings.jitter_clip,
                     settings.jitter_clip)
    return (scaled + jitter).astype(np.float32)


def _check_rooms(rooms: Sequence[Room], what: str) -> None:
    if not rooms:
        raise ValueError(f"no {what} rooms")
    for room in rooms:
        n = len(room.points)
        if room.points.shape != (n, 3) or room.colors.shape != (n, 3) or room.labels.shape != (n,) or n == 0:
            raise ValueError(f"{what} room {room.name}: expected (N, 3) points and colours and (N,) labels, got "
                             f"{room.points.shape}, {room.colors.shape}, {room.labels.shape}")
        if room.labels.min() < 0 or room.labels.max() >= N_CLASSES:
            raise ValueError(f"{what} room {room.name}: labels must be in [0, {N_CLASSES}), got "
                             f"[{room.labels.min()}, {room.labels.max()}]")


def training_crop(room: Room, grid: VoxelGrid, settings: SemSegSettings,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One augmented training crop of ``room`` (``grid`` = its voxel grid).

    Returns:
        xyz (M, 3), colours (M, 3) float32 and labels (M,) int64, M = ``settings.max_points``.
    """
    representatives = grid.representatives(rng)
    index = representatives[crop_nearest(room.points[representatives], settings.max_points, rng)]
    index = pad_by_resampling(index, settings.max_points, rng)
    xyz, colours = scene_inputs(room.points[index], augment_colors(room.colors[index], settings, rng))
    return augment_xyz(xyz, settings, rng), colours, room.labels[index]


def train_scene_segmenter(model: nn.Module, train_rooms: Sequence[Room], settings: SemSegSettings, seed: int,
                          device: torch.device | None = None, log: TextIO = sys.stderr, amp: str = "fp32",
                          check_every: int = 50, *, run_dir: Path | None = None,
                          stop_after_epochs: int | None = None,
                          training_log: TrainingLog | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place; each epoch draws ``crops_per_room`` crops of every training room
    in random order and steps on whole batches of ``batch_size`` crops.

    ``amp``, ``check_every`` and ``stop_after_epochs``: see :func:`picat.downstream.dense.train_dense`.
    ``run_dir``: the run folder of the per-epoch resume state (``resume.pt``, see
    :mod:`picat.resume`); a state there of the same settings, seed, rooms and initial weights
    is continued, one of another run refused. None: no resume state.
    ``training_log``: gets each epoch's train ``loss`` and ``accuracy`` (see
    :func:`picat.downstream.dense.train_dense`); None: no log.

    Returns:
        one row per completed epoch: {"epoch", "train_loss", "train_accuracy" (percent of crop
        points), "lr", "seconds"}.
    """
    device = device or torch.device("cpu")
    _check_rooms(train_rooms, "training")
    n_crops = len(train_rooms) * settings.crops_per_room
    if n_crops < settings.batch_size:
        raise ValueError(f"{len(train_rooms)} rooms x {settings.crops_per_room} crops are fewer than one batch of "
                         f"{_KEY}.batch_size={settings.batch_size}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    grids = [build_voxel_grid(room.points, settings.voxel_size) for room in train_rooms]
    n_batches = n_crops // settings.batch_size  # whole batches only

    def epoch_batches(epoch: int) -> Iterator[Batch]:
        order = rng.permutation(np.repeat(np.arange(len(train_rooms)), settings.crops_per_room))
        for start in range(0, n_batches * settings.batch_size, settings.batch_size):
            crops = [training_crop(train_rooms[r], grids[r], settings, rng)
                     for r in order[start:start + settings.batch_size]]
            xyz, colours, labels = (torch.from_numpy(np.stack(parts)) for parts in zip(*crops, strict=True))
            yield (xyz, colours), labels

    resume = None
    if run_dir is not None:
        resume = ResumeFile(Path(run_dir) / RESUME_FILE, {
            "protocol": "semseg", "settings": asdict(settings), "seed": seed, "amp": amp,
            "train_rooms": [(room.name, len(room.points)) for room in train_rooms],
            "initial_weights": weights_fingerprint(model)})
    optimizer = torch.optim.AdamW(model.to(device).parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    return train_dense(model, epoch_batches, n_batches, optimizer, epochs=settings.epochs, min_lr=settings.min_lr,
                       label_smoothing=settings.label_smoothing, grad_clip=settings.grad_clip, n_classes=N_CLASSES,
                       name="semseg", device=device, log=log, amp=amp, check_every=check_every, resume=resume,
                       generators={"crops": rng}, stop_after_epochs=stop_after_epochs, training_log=training_log)


@torch.no_grad()
def predict_room(model: nn.Module, room: Room, settings: SemSegSettings, rng: np.random.Generator,
                 device: torch.device, amp: str = "fp32") -> tuple[np.ndarray, int]:
    """Whole-scene prediction of one room: ((N,) predicted class of every point, number of
    sub-clouds). The forward passes run under ``amp``; the logits are averaged in float64.
    Raises if a point received no prediction."""
    n = len(room.points)
    sums = np.zeros((n, N_CLASSES), dtype=np.float64)
    counts = np.zeros(n, dtype=np.int64)
    subclouds = whole_scene_subclouds(room.points, settings.voxel_size, rng)
    for index in subclouds:
        xyz, colours = scene_inputs(room.points[index], room.colors[index])
        inputs = (torch.from_numpy(xyz)[None].to(device, non_blocking=True),
                  torch.from_numpy(colours)[None].to(device, non_blocking=True))
        with autocast(device, amp):
            logits = checked_logits(model, inputs, N_CLASSES, "scene segmenter")
        # One point per voxel, so ``index`` has no repeats and fancy-index addition is exact.
        sums[index] += logits[0].float().cpu().numpy()  # bf16 logits promoted
        counts[index] += 1
    if (counts == 0).any():
        raise AssertionError(f"room {room.name}: {int((counts == 0).sum())} of {n} points received no prediction")
    return np.argmax(sums / counts[:, None], axis=1), len(subclouds)


def evaluate_scene_segmenter(model: nn.Module, test_rooms: Sequence[Room], settings: SemSegSettings, seed: int,
                             device: torch.device | None = None, log: TextIO = sys.stderr,
                             amp: str = "fp32") -> dict[str, Any]:
    """Whole-scene test over every point of every test room (forward passes under ``amp``).

    Returns:
        {"miou", "macc", "overall_accuracy" (percent), "iou", "accuracy" (per class, in
        S3DIS_CLASSES order; NaN for a class absent from the test rooms and never predicted),
        "per_class_iou": {class: IoU}, "n_rooms", "n_points", "n_subclouds"}.
    """
    device = device or torch.device("cpu")
    _check_rooms(test_rooms, "test")
    prepare_device(device)
    model.to(device).eval()
    rng = np.random.default_rng([seed, 7919])
    confusion = np.zeros((N_CLASSES, N_CLASSES), dtype=np.int64)
    n_subclouds = 0
    for room in tqdm(test_rooms, desc="[semseg] test", unit="room", file=log, mininterval=30.0):
        prediction, n_room_subclouds = predict_room(model, room, settings, rng, device, amp)
        confusion += confusion_matrix(prediction, room.labels, N_CLASSES)
        n_subclouds += n_room_subclouds
    n_points = int(sum(len(room.points) for room in test_rooms))
    if int(confusion.sum()) != n_points:
        raise AssertionError(f"the confusion matrix counts {int(confusion.sum())} points, the rooms hold {n_points}")
    scores = scene_segmentation_scores(confusion)
    scores["per_class_iou"] = dict(zip(S3DIS_CLASSES, scores["iou"], strict=True))
    scores.update(n_rooms=len(test_rooms), n_points=n_points, n_subclouds=n_subclouds)
    return scores


def run_scene_segmentation(model: nn.Module, train_rooms: Sequence[Room], test_rooms: Sequence[Room],
                           settings: SemSegSettings, seed: int, device: torch.device | None = None,
                           log: TextIO = sys.stderr, amp: str = "fp32", *, run_dir: Path | None = None,
                           stop_after_epochs: int | None = None,
                           logging_settings: LoggingSpec | None = None) -> dict[str, Any] | None:
    """Train on rooms outside ``test_area`` and evaluate the last epoch's model on the rooms of
    ``test_area`` once.

    ``run_dir`` and ``stop_after_epochs``: see :func:`train_scene_segmenter`.
    ``logging_settings``: the ``logging`` block (:class:`picat.training_log.LoggingSettings`);
    with ``run_dir``, ``run_dir/log.csv`` gets each epoch's train ``loss`` and ``accuracy`` and
    at the end the test ``miou``, ``macc`` and ``overall_accuracy`` (percent; epoch: the last), and
    TensorBoard and W&B the same scalars as the block says.

    Returns:
        {"test": evaluate_scene_segmenter's scores, "history": [...], "settings": {...},
         "n_train_rooms", "n_test_rooms", "seconds"}; None when stopped before the last epoch.
    """
    leaked = [room.name for room in train_rooms if room.area == settings.test_area]
    if leaked:
        raise ValueError(f"training rooms {leaked[:5]} are in the test area {settings.test_area} ({_KEY}.test_area)")
    foreign = [room.name for room in test_rooms if room.area != settings.test_area]
    if foreign:
        raise ValueError(f"test rooms {foreign[:5]} are not in the test area {settings.test_area} ({_KEY}.test_area)")
    started = time.time()
    config = {"settings": asdict(settings), "seed": seed, "amp": amp, "n_train_rooms": len(train_rooms),
              "n_test_rooms": len(test_rooms)}
    with TrainingLog(run_dir, "semseg", logging_settings, config=config) as training_log:
        history = train_scene_segmenter(model, train_rooms, settings, seed, device, log, amp, run_dir=run_dir,
                                        stop_after_epochs=stop_after_epochs, training_log=training_log)
        if len(history) < settings.epochs:
            print(f"[semseg] stopped after epoch {len(history)} of {settings.epochs}; run again to resume",
                  file=log, flush=True)
            return None
        tested = time.time()
        test = evaluate_scene_segmenter(model, test_rooms, settings, seed, device, log, amp)
        training_log.record(len(history), {"test": {key: test[key] for key in ("miou", "macc", "overall_accuracy")}},
                            seconds=time.time() - tested)
    seconds = time.time() - started
    print(f"[semseg] test mIoU {test['miou']:.2f}%, mAcc {test['macc']:.2f}%, OA {test['overall_accuracy']:.2f}% on "
          f"{test['n_rooms']} rooms, {test['n_points']} points ({seconds:.0f} s)", file=log, flush=True)
    return {"test": test, "history": history, "settings": asdict(settings), "n_train_rooms": len(train_rooms),
            "n_test_rooms": len(test_rooms), "seconds": seconds}
