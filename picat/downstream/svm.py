"""Linear SVM on frozen global features (Tables 1 and 3).

Protocol (CrossPoint's, minus its test-set leak): the backbone in eval mode without
gradients gives one global feature per cloud (the first ``n_points`` points, as the peers
take them), ``sklearn.svm.SVC(kernel="linear")`` is fitted on the training features, with
C chosen by stratified k-fold cross-validation on the TRAINING features only, and scored
once on the test features. Nothing is selected on the test split.

By default the features are standardised (a StandardScaler fitted inside each CV fold):
raw features of a random-init and of a pre-trained backbone differ in scale by orders of
magnitude, so on raw features a fixed C grid favours one of them (in the demo, random-init
features picked the grid's largest C, whichever it was). ``standardize: false`` gives the
peers' raw-feature protocol.

The backbone's forward passes run under the suite's ``amp`` precision (features promoted to
float32); the C search fits its folds and C values in ``n_jobs`` processes (the job's threads).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np
import torch
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from torch import nn
from tqdm import tqdm

from picat.accelerator import autocast, prepare_device
from picat.downstream.settings import settings_from_block


@dataclass(frozen=True)
class SvmSettings:
    """The SVM protocol's settings (the config's ``downstream.svm`` block)."""

    n_points: int = 1024
    c_grid: tuple[float, ...] = (0.0001, 0.001, 0.01, 0.1, 1.0, 10.0)
    folds: int = 5
    standardize: bool = True  # scale-free C choice; the peers fit raw features (set False)
    batch_size: int = 32

    @classmethod
    def of(cls, block: dict[str, Any]) -> SvmSettings:
        """From the config's ``downstream.svm`` block (minus the run selection keys)."""
        return settings_from_block(cls, block, "downstream.svm")


@torch.no_grad()
def extract_features(backbone: nn.Module, points: np.ndarray, n_points: int, batch_size: int = 32,
                     device: torch.device | None = None, log: TextIO = sys.stderr,
                     desc: str = "features", amp: str = "fp32") -> np.ndarray:
    """Global features of a frozen backbone.

    Args:
        points: (n, N, C) clouds; the first ``n_points`` points are used, and only xyz unless
            the backbone was pre-trained with normals (then C must be 6).
        amp: the forward passes' precision, "fp32", "bf16" or "auto" (:func:`picat.accelerator.resolve_amp`).

    Returns:
        (n, D) float32 features.
    """
    metadata = getattr(backbone, "picat_metadata", {})
    channels = 6 if metadata.get("normals") else 3
    if points.ndim != 3 or points.shape[2] < channels:
        raise ValueError(f"the backbone needs clouds (n, N, {channels}), got {points.shape}"
                         + (" (it was pre-trained with normals; the dataset has none)" if channels == 6 else ""))
    if points.shape[1] < n_points:
        raise ValueError(f"the clouds have {points.shape[1]} points, fewer than the {n_points} the protocol takes")
    device = device or torch.device("cpu")
    prepare_device(device)
    backbone = backbone.to(device).eval()
    clouds = np.ascontiguousarray(points[:, :n_points, :channels], dtype=np.float32)
    batches = range(0, len(clouds), batch_size)
    out = []
    for i in tqdm(batches, desc=desc, unit="batch", file=log, mininterval=30.0):
        with autocast(device, amp):
            features = backbone(torch.from_numpy(clouds[i:i + batch_size]).to(device, non_blocking=True))
        out.append(features.float())  # bf16 features promoted; on the device until the end
    return torch.cat(out).cpu().numpy()


def fit_and_score(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                  settings: SvmSettings, seed: int = 0, n_jobs: int = 1) -> dict[str, Any]:
    """Fit the linear SVM with C chosen by CV on the training features; score on test.

    ``n_jobs``: processes for the C search's (fold, C) fits (the job's threads); the result
    does not depend on it.

    Returns:
        {"accuracy" (percent), "best_c", "cv_accuracy" (percent, mean over folds at best C),
        "cv_scores" {C: mean CV accuracy %}, "n_train", "n_test", "seconds"}.
    """
    counts = np.bincount(train_y)
    folds = int(min(settings.folds, counts[counts > 0].min()))
    if folds < 2:
        raise ValueError(f"a training class has fewer than 2 samples ({counts.tolist()}); C cannot be cross-validated")
    steps = ([StandardScaler()] if settings.standardize else []) + [SVC(kernel="linear")]
    search = GridSearchCV(make_pipeline(*steps), {"svc__C": list(settings.c_grid)},
                          cv=StratifiedKFold(folds, shuffle=True, random_state=seed), n_jobs=n_jobs)
    started = time.time()
    search.fit(train_x, train_y)
    accuracy = 100.0 * float(search.score(test_x, test_y))  # the single look at the test split
    cv = {float(c): 100.0 * float(score)
          for c, score in zip(search.cv_results_["param_svc__C"], search.cv_results_["mean_test_score"], strict=True)}
    return {"accuracy": accuracy, "best_c": float(search.best_params_["svc__C"]),
            "cv_accuracy": 100.0 * search.best_score_,
            "cv_scores": cv, "folds": folds, "n_train": int(len(train_y)), "n_test": int(len(test_y)),
            "seconds": time.time() - started}
