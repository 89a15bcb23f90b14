"""Training and evaluating a part segmenter on ShapeNetPart (Table 4), for any network called as
``model(points (B, N, C) float32, category (B,) int64) -> logits (B, N, 50)``.

The recipe is antao97/dgcnn.pytorch's part segmentation (the usual PyTorch DGCNN, see
../shared/notes/protocols.md): 200 epochs, batch 32, 2048 points, SGD (lr 0.1, momentum 0.9,
weight decay 1e-4) with a cosine schedule down to 0.001, and each training cloud scaled per
axis by U(2/3, 3/2) and shifted by U(-0.2, 0.2) (its ``translate_pointcloud``). Its loss,
``cal_loss``, smooths the labels by 0.2 (0.8 on the true part, the rest spread over the other
49): ``label_smoothing`` 0.2 here, PyTorch's form, which puts 0.8 + 0.2/50 on the true part,
a negligible difference. ``optimizer: adamw`` is offered for backbones that prefer it.

Choices the reference leaves open, made here:
- Shapes are centred and scaled into the unit sphere (xyz only) before sampling, for train
  and test alike, as the PointNet++/PointNeXt ShapeNetPart loaders do for the normal-resampled
  text files (the HDF5 files are already normalised, so this changes nothing there).
- With ``normals``, the input is xyz + normals (C = 6); anisotropic scaling then transforms
  the normals by the inverse scale and renormalises them, so they stay normal to the surface.
- Test shapes (about 2500-3000 points each in the text layout) are scored on a fixed, seeded
  sample of ``n_points`` of their points, the input size the network is trained on (antao's
  HDF5 test clouds have exactly 2048). A shape with fewer points feeds all of them plus random
  repeats; the logits of repeated points are averaged and each distinct point is scored once.
- Predictions are the argmax over the shape's category parts only, and the category passed to
  the model is its index in the benchmark's fixed order (``CATEGORY_PARTS``), whatever order
  the dataset lists its categories in.
- No selection on test: the model reported is the one after the last epoch.

With a run folder, a per-epoch resume state lets a killed job continue (:mod:`picat.resume`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch
from torch import Tensor, nn

from picat.accelerator import autocast, prepare_device
from picat.datasets.shapenetpart import CATEGORY_PARTS, PartSegmentationSet
from picat.downstream.dense import Batch, checked_logits, train_dense
from picat.downstream.seg_metrics import part_segmentation_scores, restrict_to_parts
from picat.downstream.settings import check_training_settings, settings_from_block
from picat.resume import RESUME_FILE, ResumeFile, weights_fingerprint
from picat.training_log import LoggingSpec, TrainingLog

N_PARTS = 50
_KEY = "downstream.partseg"
_GLOBAL_CATEGORY = {name: index for index, name in enumerate(CATEGORY_PARTS)}


@dataclass(frozen=True)
class PartSegSettings:
    """The part-segmentation protocol's settings (the config's ``downstream.partseg`` block)."""

    epochs: int = 200
    batch_size: int = 32
    n_points: int = 2048
    optimizer: str = "sgd"  # "sgd" or "adamw"
    lr: float = 0.1
    momentum: float = 0.9  # SGD only
    weight_decay: float = 1e-4
    min_lr: float = 0.001
    label_smoothing: float = 0.2
    scale_range: tuple[float, float] = (2.0 / 3.0, 1.5)
    translate: float = 0.2
    normals: bool = False
    grad_clip: float = 0.0  # 0 = no clipping, as antao's recipe

    def __post_init__(self) -> None:
        check_training_settings(self, _KEY, ("epochs", "batch_size", "n_points"))
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"{_KEY}.optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.translate < 0 or self.grad_clip < 0 or self.weight_decay < 0 or self.momentum < 0:
            raise ValueError(f"{_KEY}: translate, grad_clip, weight_decay and momentum must be >= 0")

    @classmethod
    def of(cls, block: dict[str, Any]) -> PartSegSettings:
        """From the config's ``downstream.partseg`` block."""
        return settings_from_block(cls, block, _KEY)


def global_categories(dataset: PartSegmentationSet) -> np.ndarray:
    """(n,) int64 index of each shape's category in the benchmark order (``CATEGORY_PARTS``)."""
    unknown = [name for name in dataset.category_names if name not in _GLOBAL_CATEGORY]
    if unknown:
        raise ValueError(f"categories {unknown} are not ShapeNetPart categories; known: {list(CATEGORY_PARTS)}")
    local = np.asarray(dataset.categories, dtype=np.int64)
    if len(local) != len(dataset.points) or (
            len(local) and (local.min() < 0 or local.max() >= len(dataset.category_names))):
        raise ValueError(f"the dataset's {len(local)} category indices do not index its {len(dataset.category_names)} "
                         f"category names for its {len(dataset.points)} shapes")
    lookup = np.array([_GLOBAL_CATEGORY[name] for name in dataset.category_names], dtype=np.int64)
    return lookup[local]


def sample_indices(n_available: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n,) indices into n_available points: without replacement when n_available >= n, else
    every point once plus random repeats, shuffled."""
    if n_available < 1:
        raise ValueError("cannot sample from a shape with no points")
    if n_available >= n:
        return rng.choice(n_available, n, replace=False)
    return rng.permutation(np.r_[np.arange(n_available), rng.choice(n_available, n - n_available)])


def sample_points(points: np.ndarray, parts: np.ndarray, n: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of a shape: (N_i, C), (N_i,) -> (n, C), (n,) (see :func:`sample_indices`)."""
    if len(points) != len(parts):
        raise ValueError(f"a shape has {len(points)} points but {len(parts)} part labels")
    index = sample_indices(len(points), n, rng)
    return points[index], parts[index]


def normalise_shape(points: np.ndarray) -> np.ndarray:
    """Centre the xyz columns on their centroid and scale them into the unit sphere; other
    columns (normals) are kept. (N, C) -> (N, C) float32."""
    out = np.array(points, dtype=np.float32)
    centred = out[:, :3] - out[:, :3].mean(axis=0)
    out[:, :3] = centred / max(float(np.linalg.norm(centred, axis=1).max()), 1e-9)
    return out


def model_inputs(dataset: PartSegmentationSet, settings: PartSegSettings) -> list[np.ndarray]:
    """Per shape, the normalised (N_i, 3) or (N_i, 6) input columns the settings ask for."""
    channels = 6 if settings.normals else 3
    shapes = []
    for index, points in enumerate(dataset.points):
        if points.ndim != 2 or points.shape[1] < channels:
            raise ValueError(f"shape {index} ({dataset.shape_ids[index] if index < len(dataset.shape_ids) else '?'}) "
                             f"has points of shape {points.shape}; {_KEY}.normals={settings.normals} needs "
                             f"{channels} columns")
        if len(points) != len(dataset.parts[index]):
            raise ValueError(f"shape {index} has {len(points)} points but {len(dataset.parts[index])} part labels")
        shapes.append(normalise_shape(points[:, :channels]))
    return shapes


def augment(points: Tensor, settings: PartSegSettings, generator: torch.Generator) -> Tensor:
    """Per-shape anisotropic scaling and translation of xyz; normals follow the scaling.
    (B, N, C) -> same."""
    batch = points.shape[0]
    low, high = settings.scale_range
    scale = (low + (high - low) * torch.rand(batch, 1, 3, generator=generator)).to(points)
    shift = (settings.translate * (2 * torch.rand(batch, 1, 3, generator=generator) - 1)).to(points)
    xyz = points[..., :3] * scale + shift
    if points.shape[-1] < 6:
        return torch.cat([xyz, points[..., 3:]], dim=-1)
    # A normal transforms by the inverse transpose of the (diagonal) scaling.
    normals = nn.functional.normalize(points[..., 3:6] / scale, dim=-1)
    return torch.cat([xyz, normals, points[..., 6:]], dim=-1)


def _optimizer(model: nn.Module, settings: PartSegSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                               weight_decay=settings.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)


def train_part_segmenter(model: nn.Module, train: PartSegmentationSet, settings: PartSegSettings, seed: int,
                         device: torch.device | None = None, log: TextIO = sys.stderr, amp: str = "fp32",
                         check_every: int = 50, *, run_dir: Path | None = None,
                         stop_after_epochs: int | None = None,
                         training_log: TrainingLog | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place for ``settings.epochs`` epochs; each epoch every shape (whole
    batches only) is seen once with a fresh sample of ``n_points`` points.

    ``amp``, ``check_every`` and ``stop_after_epochs``: see :func:`picat.downstream.dense.train_dense`.
    ``run_dir``: the run folder of the per-epoch resume state (``resume.pt``, see
    :mod:`picat.resume`); a state there of the same settings, seed, data size and initial
    weights is continued, one of another run refused. None: no resume state.
    ``training_log``: gets each epoch's train ``loss`` and ``accuracy`` (see
    :func:`picat.downstream.dense.train_dense`); None: no log.

    Returns:
        one row per completed epoch: {"epoch", "train_loss", "train_accuracy" (percent of
        points, argmax over all 50 parts), "lr", "seconds"}.
    """
    device = device or torch.device("cpu")
    shapes, parts, categories = model_inputs(train, settings), train.parts, global_categories(train)
    if len(shapes) < settings.batch_size:
        raise ValueError(f"{len(shapes)} training shapes are fewer than one batch of {_KEY}.batch_size="
                         f"{settings.batch_size}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    n_batches = len(shapes) // settings.batch_size  # whole batches only (BatchNorm needs B >= 2)

    def epoch_batches(epoch: int) -> Iterator[Batch]:
        order = rng.permutation(len(shapes))
        for start in range(0, n_batches * settings.batch_size, settings.batch_size):
            index = order[start:start + settings.batch_size]
            samples = [sample_points(shapes[i], parts[i], settings.n_points, rng) for i in index]
            points = augment(torch.from_numpy(np.stack([s[0] for s in samples])), settings, generator)
            labels = torch.from_numpy(np.stack([s[1] for s in samples]))
            yield (points, torch.from_numpy(categories[index])), labels

    resume = None
    if run_dir is not None:
        resume = ResumeFile(Path(run_dir) / RESUME_FILE, {
            "protocol": "partseg", "settings": asdict(settings), "seed": seed, "amp": amp, "n_train": len(shapes),
            "initial_weights": weights_fingerprint(model)})
    return train_dense(model, epoch_batches, n_batches, _optimizer(model.to(device), settings), epochs=settings.epochs,
                       min_lr=settings.min_lr, label_smoothing=settings.label_smoothing, grad_clip=settings.grad_clip,
                       n_classes=N_PARTS, name="partseg", device=device, log=log, amp=amp,
                       check_every=check_every, resume=resume, generators={"samples": rng, "augment": generator},
                       stop_after_epochs=stop_after_epochs, training_log=training_log)


@torch.no_grad()
def predict_parts(model: nn.Module, test: PartSegmentationSet, settings: PartSegSettings, seed: int,
                  device: torch.device | None = None, amp: str = "fp32",
                  ) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Restricted part predictions on a fixed seeded sample of ``n_points`` per test shape
    (the forward pass under ``amp``, logits averaged in float64).

    Returns:
        (predictions, targets, category names): per shape, (M_i,) predicted and true part
        labels of its M_i = min(N_i, n_points) distinct scored points, and its category.
    """
    device = device or torch.device("cpu")
    shapes, categories = model_inputs(test, settings), global_categories(test)
    names = [test.category_names[c] for c in test.categories]
    # A stream of its own, so the test sample does not depend on how long training ran.
    rng = np.random.default_rng([seed, 7919])
    samples = [sample_indices(len(points), settings.n_points, rng) for points in shapes]
    prepare_device(device)
    model.to(device).eval()
    predictions, targets = [], []
    for start in range(0, len(shapes), settings.batch_size):
        batch = range(start, min(start + settings.batch_size, len(shapes)))
        points = torch.from_numpy(np.stack([shapes[i][samples[i]] for i in batch])).to(device, non_blocking=True)
        category = torch.from_numpy(categories[list(batch)]).to(device, non_blocking=True)
        with autocast(device, amp):
            logits = checked_logits(model, (points, category), N_PARTS, "part segmenter")
        logits = logits.float().cpu().numpy()  # bf16 logits promoted
        for row, i in enumerate(batch):
            distinct, inverse = np.unique(samples[i], return_inverse=True)
            sums = np.zeros((len(distinct), N_PARTS), dtype=np.float64)
            np.add.at(sums, inverse, logits[row])
            mean = sums / np.bincount(inverse, minlength=len(distinct))[:, None]
            predictions.append(restrict_to_parts(mean, CATEGORY_PARTS[names[i]]))
            targets.append(np.asarray(test.parts[i])[distinct])
    return predictions, targets, names


def evaluate_part_segmenter(model: nn.Module, test: PartSegmentationSet, settings: PartSegSettings, seed: int,
                            device: torch.device | None = None, amp: str = "fp32") -> dict[str, Any]:
    """Instance and class mIoU (percent) on the test shapes.

    Returns:
        {"instance_miou", "class_miou", "per_category": {category: mean shape IoU}, "n_shapes",
         "n_points": points scored in all}.
    """
    if len(test) == 0:
        raise ValueError("the part-segmentation test set is empty")
    predictions, targets, names = predict_parts(model, test, settings, seed, device, amp)
    scores = part_segmentation_scores(predictions, targets, names, CATEGORY_PARTS)
    scores["n_points"] = int(sum(len(t) for t in targets))
    return scores


def run_part_segmentation(model: nn.Module, train: PartSegmentationSet, test: PartSegmentationSet,
                          settings: PartSegSettings, seed: int, device: torch.device | None = None,
                          log: TextIO = sys.stderr, amp: str = "fp32", *, run_dir: Path | None = None,
                          stop_after_epochs: int | None = None,
                          logging_settings: LoggingSpec | None = None) -> dict[str, Any] | None:
    """Train on ``train`` and evaluate the last epoch's model on ``test`` once (both under ``amp``).

    ``run_dir`` and ``stop_after_epochs``: see :func:`train_part_segmenter`.
    ``logging_settings``: the ``logging`` block (:class:`picat.training_log.LoggingSettings`);
    with ``run_dir``, ``run_dir/log.csv`` gets each epoch's train ``loss`` and ``accuracy`` and
    at the end the test ``instance_miou`` and ``class_miou`` (percent; epoch: the last), and
    TensorBoard and W&B the same scalars as the block says.

    Returns:
        {"test": evaluate_part_segmenter's scores, "history": [...], "settings": {...},
         "n_train", "n_test", "seconds"}; None when stopped before the last epoch.
    """
    started = time.time()
    config = {"settings": asdict(settings), "seed": seed, "amp": amp, "n_train": len(train), "n_test": len(test)}
    with TrainingLog(run_dir, "partseg", logging_settings, config=config) as training_log:
        history = train_part_segmenter(model, train, settings, seed, device, log, amp, run_dir=run_dir,
                                       stop_after_epochs=stop_after_epochs, training_log=training_log)
        if len(history) < settings.epochs:
            print(f"[partseg] stopped after epoch {len(history)} of {settings.epochs}; run again to resume",
                  file=log, flush=True)
            return None
        tested = time.time()
        test_scores = evaluate_part_segmenter(model, test, settings, seed, device, amp)
        training_log.record(len(history), {"test": {key: test_scores[key] for key in ("instance_miou", "class_miou")}},
                            seconds=time.time() - tested)
    seconds = time.time() - started
    print(f"[partseg] test instance mIoU {test_scores['instance_miou']:.2f}%, class mIoU "
          f"{test_scores['class_miou']:.2f}% on {test_scores['n_shapes']} shapes ({seconds:.0f} s)",
          file=log, flush=True)
    return {"test": test_scores, "history": history, "settings": asdict(settings), "n_train": len(train),
            "n_test": len(test), "seconds": seconds}
