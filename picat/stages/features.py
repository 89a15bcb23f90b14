"""The features step: a frozen backbone's global features of a benchmark's train and test splits.

The linear SVM (Tables 1 and 3) and the few-shot probe (picat-only) both fit on the same
frozen features: the first ``n_points`` points of every cloud through the backbone in eval
mode (:func:`picat.downstream.svm.extract_features`). Extracting them once per (benchmark,
backbone, source = variant or random init, seed) and letting both protocols read the file
saves the second extraction wherever both run on the same backbone.

The file, ``results/frozen_features/<suite>/<benchmark>/<backbone>_<source>/seed<N>.npz``, is
an uncompressed ``np.savez`` archive readable with ``allow_pickle=False``:

    train_x (n_train, D) float32    train_y (n_train,) int64
    test_x  (n_test, D)  float32    test_y  (n_test,)  int64
    class_names (n_classes,) str    metadata () str: a JSON object, :data:`METADATA_KEYS`

The metadata says where the features came from (the checkpoint path or the random-init spec,
the backbone's init, variant, image weights and pre-training size: what the records carry;
for an outside checkpoint, init "imported" and the import's name as its variant),
how they were extracted (``n_points``, ``batch_size``, precision, device) and from which files
(``train_source``, ``test_source``). A protocol reading the file checks that it is the run it
was asked for (:func:`read_features`): benchmark, suite, seed, ``n_points`` and ``batch_size``.
"""

from __future__ import annotations

import json
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from picat.accelerator import precision_label
from picat.atomic import atomic_path
from picat.datasets import read_classification
from picat.devices import pick_device
from picat.downstream.backbones import backbone_source, image_weights_label, trainable_pretrain_params
from picat.downstream.records import IMPORT_NAME, json_safe
from picat.downstream.settings import settings_from_block
from picat.downstream.svm import extract_features

FORMAT = 1  # bumped when the file's layout changes; read_features refuses another
ARRAYS = ("train_x", "train_y", "test_x", "test_y", "class_names", "metadata")
# What every features file's metadata holds.
METADATA_KEYS = ("format", "benchmark", "suite", "seed", "backbone", "init", "variant", "image_backbone",
                 "trainable_pretrain_params", "checkpoint", "random_spec", "backbone_metadata", "dataset",
                 "n_points", "batch_size", "amp", "precision", "device", "feature_dim", "n_train", "n_test",
                 "train_source", "test_source", "seconds")


@dataclass(frozen=True)
class FeatureSettings:
    """How features are extracted: the ``n_points`` and ``batch_size`` keys that the config's
    ``downstream.svm`` and ``downstream.fewshot`` blocks share (``picat.config`` refuses a suite
    where the two blocks disagree on them, so one file serves both)."""

    n_points: int = 1024
    batch_size: int = 32

    def __post_init__(self) -> None:
        for name in ("n_points", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"features.{name} must be a positive integer, got {value!r}")

    @classmethod
    def of(cls, block: dict[str, Any]) -> FeatureSettings:
        """From ``{"n_points", "batch_size"}`` (the shared keys of ``downstream.svm`` / ``downstream.fewshot``)."""
        return settings_from_block(cls, block, "features")


@dataclass(frozen=True)
class FrozenFeatures:
    """One (benchmark, backbone source, seed)'s frozen features and where they came from.

    Attributes:
        train_x: (n_train, D) float32 global features of the training split.
        train_y: (n_train,) int64 labels in ``[0, len(class_names))``.
        test_x: (n_test, D) float32; test_y: (n_test,) int64.
        metadata: the :data:`METADATA_KEYS` (JSON-safe).
    """

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: tuple[str, ...]
    metadata: dict[str, Any]


def source_identity(init: str, variant: str | None, metadata: dict[str, Any] | None, checkpoint: Path | None,
                    imported: str | None) -> tuple[str, str | None]:
    """The (init, variant) a frozen-feature run records for its backbone source.

    ``imported`` (the workflow passes the config key under ``<suite>.imported``) marks the
    checkpoint as an outside one: init "imported", variant = that name. Without it, a checkpoint
    that ``picat convert`` wrote (``metadata["converted_from"]``) is imported too, named by its
    format (``crosspoint``), so that it is never recorded as a Pic@Point run (it has no
    pre-training variant). Any other source keeps what
    :func:`picat.downstream.backbones.backbone_source` said.

    Raises:
        ValueError: ``imported`` with a random init, or a name :data:`IMPORT_NAME` refuses.
    """
    if imported is not None:
        if checkpoint is None:
            raise ValueError(f"imported {imported!r}: an import names an outside checkpoint, not a random init")
        if IMPORT_NAME.fullmatch(imported) is None:
            raise ValueError(f"imported {imported!r}: an import's name has letters, digits, '_' and '-' (at most 64, "
                             "starting with a letter or digit)")
        return "imported", imported
    converted = (metadata or {}).get("converted_from")
    if converted:
        return "imported", str(converted.get("format") or "outside")
    return init, variant


def imported_provenance(metadata: dict[str, Any]) -> dict[str, Any] | None:
    """An imported run's provenance for its records' details (None for any other source):
    the import's name, the checkpoint read, and the outside format and file it was converted from."""
    if metadata["init"] != "imported":
        return None
    converted = (metadata.get("backbone_metadata") or {}).get("converted_from") or {}
    return {"name": metadata["variant"], "checkpoint": metadata["checkpoint"], "format": converted.get("format"),
            "file": converted.get("file")}


def extract_frozen_features(benchmark: str, dataset: dict[str, Any], settings: FeatureSettings, suite: str,
                            seed: int, checkpoint: Path | None = None, random_spec: dict[str, Any] | None = None,
                            device: str = "auto", log: TextIO = sys.stderr, amp: str = "fp32",
                            tag: str = "features", imported: str | None = None) -> FrozenFeatures:
    """Read both splits of ``dataset`` and extract the frozen backbone's global features of each.

    Args:
        dataset: the benchmark's reader spec (``picat.datasets.read_classification``).
        seed: the pre-training seed (checkpoint) or the random init's seed.
        checkpoint, random_spec: exactly one (:func:`picat.downstream.backbones.backbone_source`).
        amp: the forward passes' precision ("fp32", "bf16", "auto").
        tag: the log lines' prefix (the protocol extracting for itself, or "features").
        imported: the name of the outside checkpoint ``checkpoint`` is (:func:`source_identity`).

    Raises:
        ValueError: the two splits name different classes, or the backbone's input does not fit the clouds.
    """
    started = time.time()
    backbone, init, variant, metadata = backbone_source(checkpoint, random_spec, seed, baseline="random")
    init, variant = source_identity(init, variant, metadata, checkpoint, imported)
    train, test = read_classification(dataset, "train"), read_classification(dataset, "test")
    if train.class_names != test.class_names:
        raise ValueError(f"{benchmark}: train and test splits name different classes")
    where = pick_device(device)
    name = backbone.picat_metadata["backbone"]
    print(f"[{tag}] {benchmark}: {len(train.labels)} train / {len(test.labels)} test clouds, {len(train.class_names)} "
          f"classes; backbone {name} ({init}{'' if variant is None else ', ' + variant}, seed {seed}) on {where}",
          file=log, flush=True)
    train_x = extract_features(backbone, train.points, settings.n_points, settings.batch_size, where, log,
                               "train features", amp)
    test_x = extract_features(backbone, test.points, settings.n_points, settings.batch_size, where, log,
                              "test features", amp)
    info = {
        "format": FORMAT, "benchmark": benchmark, "suite": suite, "seed": int(seed), "backbone": name, "init": init,
        "variant": variant, "image_backbone": None if metadata is None else image_weights_label(metadata),
        "trainable_pretrain_params": trainable_pretrain_params(metadata),
        "checkpoint": None if checkpoint is None else str(checkpoint),
        "random_spec": random_spec, "backbone_metadata": json_safe(_plain(
            {key: value for key, value in backbone.picat_metadata.items() if key != "history"})),  # in log.csv
        "dataset": json_safe(_plain(dict(dataset))), "n_points": settings.n_points,
        "batch_size": settings.batch_size, "amp": amp, "precision": precision_label(amp, where),
        "device": str(where), "feature_dim": int(train_x.shape[1]), "n_train": int(len(train.labels)),
        "n_test": int(len(test.labels)), "train_source": train.source, "test_source": test.source,
        # Backbone loading, reading and both splits' forward passes: what a protocol extracting
        # for itself spent before its first fit.
        "seconds": time.time() - started}
    return FrozenFeatures(train_x, train.labels.astype(np.int64), test_x, test.labels.astype(np.int64),
                          tuple(train.class_names), info)


def _plain(value: Any) -> Any:
    """``value`` with tuples as lists and paths as strings, so that it is JSON (metadata only)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_features(features: FrozenFeatures, path: Path) -> None:
    """Write ``features`` as an uncompressed ``.npz`` (no pickled objects) atomically."""
    path = Path(path)
    if path.suffix != ".npz":
        raise ValueError(f"{path}: a features file is named *.npz (np.savez would append the suffix)")
    with atomic_path(path) as temporary:  # the temporary keeps the .npz suffix
        np.savez(temporary, train_x=features.train_x, train_y=features.train_y, test_x=features.test_x,
                 test_y=features.test_y, class_names=np.asarray(features.class_names, dtype=str),
                 metadata=np.asarray(json.dumps(features.metadata, sort_keys=True)))


def read_features(path: Path, *, benchmark: str | None = None, suite: str | None = None, seed: int | None = None,
                  settings: FeatureSettings | None = None) -> FrozenFeatures:
    """A features file, checked whole and, for each argument given, against the run asked for.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a features file of this format (a missing array or metadata key, a bad
            shape), or its benchmark, suite, seed, ``n_points`` or ``batch_size`` differs from the
            one asked for; the message names the file and the key.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such features file (made by `python -m picat features`)")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in ARRAYS if name in archive.files}
    except (OSError, ValueError, EOFError, TypeError, AttributeError, zipfile.BadZipFile) as error:
        # not an .npz (a .npy array is no context manager), or one holding pickled objects
        raise ValueError(f"{path}: not a readable picat features file ({type(error).__name__}: {error})") from error
    missing = [name for name in ARRAYS if name not in arrays]
    if missing:
        raise ValueError(f"{path}: not a picat features file: no {missing} array(s)")
    try:
        metadata = json.loads(str(arrays["metadata"]))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: key 'metadata' is not a JSON object ({error})") from error
    if not isinstance(metadata, dict):
        raise ValueError(f"{path}: key 'metadata' is not a JSON object")
    absent = [key for key in METADATA_KEYS if key not in metadata]
    if absent:
        raise ValueError(f"{path}: metadata lacks {absent}")
    if metadata["format"] != FORMAT:
        raise ValueError(f"{path}: metadata key 'format' is {metadata['format']!r}, this picat reads {FORMAT} "
                         "(extract the features again)")
    train_x, test_x = arrays["train_x"], arrays["test_x"]
    train_y, test_y = arrays["train_y"], arrays["test_y"]
    class_names = tuple(str(name) for name in arrays["class_names"].tolist())
    if (train_x.ndim != 2 or test_x.ndim != 2 or train_x.shape[1] != test_x.shape[1]
            or train_x.shape[1] != metadata["feature_dim"]):
        raise ValueError(f"{path}: train_x {train_x.shape} and test_x {test_x.shape} are not (n, "
                         f"{metadata['feature_dim']}) features (metadata key 'feature_dim')")
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"{path}: {split}_y {y.shape} {y.dtype} is not one integer label per row of {split}_x")
        if len(y) and (y.min() < 0 or y.max() >= len(class_names)):
            raise ValueError(f"{path}: {split}_y has labels outside [0, {len(class_names)}) (key 'class_names')")
    wanted = {"benchmark": benchmark, "suite": suite, "seed": seed}
    if settings is not None:
        wanted |= {"n_points": settings.n_points, "batch_size": settings.batch_size}
    for key, value in wanted.items():
        if value is not None and metadata[key] != value:
            raise ValueError(f"{path}: metadata key '{key}' is {metadata[key]!r}, this run asks for {value!r} "
                             "(extract the features again with the run's settings)")
    return FrozenFeatures(train_x, train_y.astype(np.int64), test_x, test_y.astype(np.int64), class_names, metadata)


def frozen_features_for(tag: str, benchmark: str, dataset: dict[str, Any] | None, settings: FeatureSettings,
                        suite: str, seed: int, checkpoint: Path | None, random_spec: dict[str, Any] | None,
                        features: Path | None, device: str, log: TextIO, amp: str,
                        imported: str | None = None) -> FrozenFeatures:
    """A protocol's frozen features: read from ``features`` (checked against the run), else extracted.

    Raises:
        ValueError: ``features`` given together with a backbone source or dataset (the file
            already says which), or neither given; or the file is not this run's.
    """
    if features is None:
        if dataset is None:
            raise ValueError(f"{tag}: give a features file, or a dataset spec with a checkpoint or random init")
        return extract_frozen_features(benchmark, dataset, settings, suite, seed, checkpoint, random_spec, device,
                                       log, amp, tag=tag, imported=imported)
    if checkpoint is not None or random_spec is not None or imported is not None:
        raise ValueError(f"{tag}: give a features file or a backbone source (--checkpoint/--random), not both: "
                         "the features file names the backbone it came from")
    frozen = read_features(Path(features), benchmark=benchmark, suite=suite, seed=seed, settings=settings)
    meta = frozen.metadata
    print(f"[{tag}] {benchmark}: {meta['n_train']} train / {meta['n_test']} test clouds, {len(frozen.class_names)} "
          f"classes; features of backbone {meta['backbone']} ({meta['init']}"
          f"{'' if meta['variant'] is None else ', ' + meta['variant']}, seed {seed}) from {features} "
          f"(extracted on {meta['device']}, {meta['precision']})", file=log, flush=True)
    return frozen


def run_features(benchmark: str, dataset: dict[str, Any], settings: dict[str, Any], output: Path, suite: str,
                 seed: int, checkpoint: Path | None = None, random_spec: dict[str, Any] | None = None,
                 device: str = "auto", log: TextIO = sys.stderr, amp: str = "fp32",
                 imported: str | None = None) -> FrozenFeatures:
    """Extract one run's frozen features (:func:`extract_frozen_features`) and write them to ``output``.

    Args:
        settings: ``{"n_points", "batch_size"}`` (:class:`FeatureSettings`; missing keys take the defaults).
        imported: the name under which ``checkpoint``, an outside one, is scored (:func:`source_identity`).
    """
    features = extract_frozen_features(benchmark, dataset, FeatureSettings.of(settings), suite, seed, checkpoint,
                                       random_spec, device, log, amp, imported=imported)
    write_features(features, output)
    meta = features.metadata
    print(f"[features] {benchmark}: wrote {output} ({meta['n_train']} + {meta['n_test']} x {meta['feature_dim']}, "
          f"{meta['precision']}, {meta['seconds']:.1f} s)", file=log, flush=True)
    return features
