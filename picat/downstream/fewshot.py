"""Few-shot linear probe (label efficiency): a linear SVM on frozen global features with k
training objects per category. picat-only: the paper has no such table.

Protocol (one job = one benchmark, backbone, init/variant and seed):

* **Features, once.** :func:`picat.downstream.svm.extract_features` gives every training and
  test cloud's global feature once; every shot count and draw below is fitted on those arrays.
* **Draws.** For ``k`` shots, draw ``d`` (``d = 0 .. draws-1``) takes ``k`` training objects of
  every category, without replacement, with ``numpy.random.default_rng([seed, k, d])`` (one
  generator per draw, categories visited in label order), so draws are reproducible per seed
  and differ across draws and seeds. A category with fewer than ``k`` training objects gives
  all it has, and the record lists it under ``short_categories`` (never silently).
  ``"all"`` is every training object, one draw.
* **C, never from the test split.** With k shots C cannot be cross-validated (k = 1 leaves one
  sample per class), so every k-shot draw uses the fixed ``c`` (default 1.0) on features
  standardised with a StandardScaler fitted on the draw's training samples only. With
  standardised features and few samples per class the classes are linearly separable, so the
  hard-margin solution is reached once C exceeds the largest dual coefficient and the result
  is flat in C above a small value; docs/downstream.md gives the measurement that checks it.
  ``"all"`` uses the SVM protocol unchanged (:func:`picat.downstream.svm.fit_and_score`: C from
  ``c_grid`` by stratified ``folds``-fold CV on the training features), so its number equals
  the ``svm`` record of the same backbone, benchmark and settings.
* **Score.** Each draw's SVM is scored once on the whole test split (overall accuracy, %). Per
  shot count the record holds each draw's accuracy, their mean and their sample standard
  deviation (ddof=1; None for one draw). The table averages the per-seed means over seeds.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from picat.downstream.settings import settings_from_block
from picat.downstream.svm import SvmSettings, fit_and_score

ALL = "all"


@dataclass(frozen=True)
class FewshotSettings:
    """The probe's settings (the config's ``downstream.fewshot`` block, minus ``benchmarks``)."""

    shots: tuple[int | str, ...] = (1, 5, 10, ALL)
    draws: int = 10
    c: float = 1.0  # every k-shot draw's C, on standardised features
    n_points: int = 1024
    batch_size: int = 32
    standardize: bool = True
    c_grid: tuple[float, ...] = (0.0001, 0.001, 0.01, 0.1, 1.0, 10.0)  # "all" only (CV on train)
    folds: int = 5  # "all" only

    def __post_init__(self) -> None:
        if not self.shots:
            raise ValueError("downstream.fewshot.shots is empty")
        for shots in self.shots:
            if shots != ALL and (isinstance(shots, bool) or not isinstance(shots, int) or shots < 1):
                raise ValueError(f"downstream.fewshot.shots: {shots!r} is not a positive integer or 'all'")
        if len(set(self.shots)) != len(self.shots):
            raise ValueError(f"downstream.fewshot.shots repeats a value: {list(self.shots)}")
        if isinstance(self.draws, bool) or not isinstance(self.draws, int) or self.draws < 1:
            raise ValueError(f"downstream.fewshot.draws must be a positive integer, got {self.draws!r}")
        if not self.c > 0:
            raise ValueError(f"downstream.fewshot.c must be positive, got {self.c!r}")

    @classmethod
    def of(cls, block: dict[str, Any]) -> FewshotSettings:
        """From the config's ``downstream.fewshot`` block (minus ``benchmarks``)."""
        return settings_from_block(cls, block, "downstream.fewshot")

    def svm(self) -> SvmSettings:
        """The SVM protocol's settings that the ``"all"`` row runs with."""
        return SvmSettings(n_points=self.n_points, c_grid=self.c_grid, folds=self.folds,
                           standardize=self.standardize, batch_size=self.batch_size)


def draw_indices(labels: np.ndarray, n_classes: int, shots: int, seed: int,
                 draw: int) -> tuple[np.ndarray, dict[int, int]]:
    """The training objects of one k-shot draw.

    Args:
        labels: (n,) integer class labels of the training split, in ``[0, n_classes)``.
        shots: k, objects drawn per category (without replacement).
        seed, draw: the generator is ``numpy.random.default_rng([seed, shots, draw])``.

    Returns:
        (m,) sorted indices into ``labels`` (m = sum over classes of min(k, class size)), and
        {class index: objects it has} for every class with fewer than ``shots`` (0 included).
    """
    if shots < 1:
        raise ValueError(f"shots must be at least 1, got {shots}")
    labels = np.asarray(labels)
    rng = np.random.default_rng([seed, shots, draw])
    chosen, short = [], {}
    for label in range(n_classes):
        members = np.flatnonzero(labels == label)
        if len(members) < shots:
            short[label] = len(members)
            chosen.append(members)
        else:
            chosen.append(rng.choice(members, size=shots, replace=False))
    return np.sort(np.concatenate(chosen)).astype(np.int64), short


def fit_fixed_c(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, c: float,
                standardize: bool = True) -> tuple[float, bool]:
    """A linear SVC with the given C, fitted on (train_x, train_y) only, scored once on test.

    Args:
        train_x: (m, D) features of the drawn training objects; the scaler is fitted on them alone.
        test_x: (n, D) test features.

    Returns:
        (test accuracy in %, hard margin): the latter is True when no dual coefficient of any
        one-vs-one problem sits at the bound C, i.e. the fit is the hard-margin solution, which
        every C' >= C gives unchanged (the record's check that the fixed C does not matter).
    """
    if len(np.unique(train_y)) < 2:
        raise ValueError(f"a draw needs objects of at least 2 categories, got labels {sorted(set(train_y.tolist()))}")
    steps = ([StandardScaler()] if standardize else []) + [SVC(kernel="linear", C=c)]
    model = make_pipeline(*steps).fit(train_x, train_y)
    # libsvm clips the dual coefficients at exactly C; a hair below is free.
    hard_margin = bool((np.abs(model[-1].dual_coef_) < c * (1 - 1e-9)).all())
    return 100.0 * float(model.score(test_x, test_y)), hard_margin


def _spread(accuracies: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof=1; None for a single draw)."""
    values = np.asarray(accuracies, dtype=np.float64)
    return float(values.mean()), (float(values.std(ddof=1)) if len(values) > 1 else None)


def probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
          class_names: Sequence[str], settings: FewshotSettings, seed: int, n_jobs: int = 1,
          log: TextIO = sys.stderr) -> dict[str, dict[str, Any]]:
    """Every shot count's draws on one job's features.

    Args:
        train_x: (n_train, D) training features; train_y: (n_train,) labels in [0, len(class_names)).
        test_x: (n_test, D) test features; test_y: (n_test,) labels.
        seed: the job's seed (the draws' generators and the "all" row's CV folds).
        n_jobs: processes for the "all" row's C search.

    Returns:
        {shot label ("1", "5", ..., "all"): {"shots", "mean", "std", "n_draws", "accuracies",
        "c_rule", "c" (per draw), "n_train" (per draw), "short_categories" {name: objects}; for
        k shots "hard_margin" (per draw, :func:`fit_fixed_c`); for "all" the C search's
        "best_c", "cv_scores", "cv_accuracy", "folds"}}, accuracies in %.
    """
    n_classes = len(class_names)
    counts = np.bincount(train_y, minlength=n_classes)
    results: dict[str, dict[str, Any]] = {}
    for shots in settings.shots:
        if shots == ALL:
            fit = fit_and_score(train_x, train_y, test_x, test_y, settings.svm(), seed, n_jobs=n_jobs)
            results[ALL] = {
                "shots": ALL, "mean": fit["accuracy"], "std": None, "n_draws": 1, "accuracies": [fit["accuracy"]],
                "c_rule": f"{fit['folds']}-fold CV on the training split over c_grid (the svm protocol)",
                "c": [fit["best_c"]], "n_train": [int(len(train_y))],
                "short_categories": {class_names[i]: 0 for i in np.flatnonzero(counts == 0)},
                "best_c": fit["best_c"], "cv_scores": fit["cv_scores"], "cv_accuracy": fit["cv_accuracy"],
                "folds": fit["folds"]}
        else:
            accuracies, n_train, hard_margin, short = [], [], [], {}
            for draw in range(settings.draws):
                indices, short = draw_indices(train_y, n_classes, shots, seed, draw)
                accuracy, hard = fit_fixed_c(train_x[indices], train_y[indices], test_x, test_y, settings.c,
                                             settings.standardize)
                accuracies.append(accuracy)
                hard_margin.append(hard)
                n_train.append(int(len(indices)))
            mean, std = _spread(accuracies)
            results[str(shots)] = {
                "shots": shots, "mean": mean, "std": std, "n_draws": settings.draws, "accuracies": accuracies,
                "c_rule": f"fixed C={settings.c}" + (" on standardised features" if settings.standardize else ""),
                "c": [settings.c] * settings.draws, "hard_margin": hard_margin, "n_train": n_train,
                "short_categories": {class_names[label]: available for label, available in short.items()}}
        row = results[str(shots)]
        spread = "" if row["std"] is None else f" ± {row['std']:.2f}"
        shortfall = f"; short of {shots}: {row['short_categories']}" if row["short_categories"] else ""
        if "hard_margin" in row:
            shortfall += f"; hard margin in {sum(row['hard_margin'])}/{row['n_draws']} draws"
        print(f"[fewshot] {shots} shot(s): {row['mean']:.2f}{spread}% over {row['n_draws']} draw(s) "
              f"({row['c_rule']}){shortfall}", file=log, flush=True)
    return results
