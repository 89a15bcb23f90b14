"""Listing a pre-training corpus of meshes and splitting it into shard manifests.

A manifest is a TSV with one mesh per row: ``object_id``, ``category``, ``path``. The
corpus is sorted by object id and cut into consecutive shards of ``objects_per_shard``
rows, so a shard's content depends only on the corpus listing and the shard size.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from picat.atomic import atomic_path
from picat.meshes import SUPPORTED_SUFFIXES

MANIFEST_COLUMNS = ("object_id", "category", "path")


class CorpusError(ValueError):
    """A corpus folder that is missing or does not have the expected layout."""


@dataclass(frozen=True)
class MeshRecord:
    """One mesh of the corpus: a unique id, its category and the file to read."""

    object_id: str
    category: str
    path: str


def _require_folder(root: Path, layout: str, source: str) -> None:
    if not root.is_dir():
        raise CorpusError(f"corpus folder {root} does not exist; expected the {layout} layout ({source})")


def list_shapenetcore(root: Path) -> list[MeshRecord]:
    """ShapeNetCore v1 (``<synset>/<id>/model.obj``) or v2 (``<synset>/<id>/models/model_normalized.obj``).

    A model folder without either file is listed with the v1 path, so that the render job
    records it as skipped (file does not exist) instead of dropping it silently.
    """
    root = Path(root)
    _require_folder(root, "ShapeNetCore <synset>/<model id>/model.obj (v1) or .../models/model_normalized.obj (v2)",
                    "ShapeNetCore from shapenet.org")
    records = []
    synsets = [entry for entry in os.scandir(root) if entry.is_dir() and entry.name.isdigit()]
    for synset in sorted(synsets, key=lambda entry: entry.name):
        for model in sorted((entry for entry in os.scandir(synset.path) if entry.is_dir()), key=lambda e: e.name):
            v2 = Path(model.path) / "models" / "model_normalized.obj"
            path = v2 if v2.is_file() else Path(model.path) / "model.obj"
            records.append(MeshRecord(f"{synset.name}_{model.name}", synset.name, str(path)))
    if not records:
        raise CorpusError(f"no ShapeNetCore models under {root}: expected <8-digit synset>/<model id>/ folders")
    return records


def list_mesh_folder(root: Path, splits: Iterable[str] | None = None) -> list[MeshRecord]:
    """Meshes under ``<root>/<category>/`` (any depth); with ``splits``, only ``<category>/<split>/``.

    ModelNet's ``<class>/{train,test}/<class>_NNNN.off`` is this layout with splits.
    The object id is the path relative to ``root`` without its suffix, with '_' for '/',
    so ids stay unique across categories and splits.
    """
    root = Path(root)
    layout = "<category>/<split>/<name>.off" if splits else "<category>/**/<name>.{obj,off,ply,stl}"
    _require_folder(root, layout, "a folder of meshes, one sub-folder per category")
    records = []
    for category in sorted(entry.name for entry in os.scandir(root) if entry.is_dir()):
        bases = [root / category / split for split in splits] if splits else [root / category]
        for base in bases:
            if not base.is_dir():
                continue
            for path in sorted(base.rglob("*")):
                if path.suffix.lower() in SUPPORTED_SUFFIXES and path.is_file():
                    relative = path.relative_to(root).with_suffix("")
                    records.append(MeshRecord("_".join(relative.parts), category, str(path)))
    if not records:
        raise CorpusError(f"no meshes ({', '.join(SUPPORTED_SUFFIXES)}) found under {root} in the layout {layout}")
    return records


def split_into_shards(records: list[MeshRecord], objects_per_shard: int) -> list[list[MeshRecord]]:
    """Sort by object id and cut into consecutive shards of at most ``objects_per_shard``."""
    if objects_per_shard <= 0:
        raise ValueError(f"objects_per_shard must be positive, got {objects_per_shard}")
    ordered = sorted(records, key=lambda record: record.object_id)
    counts = Counter(record.object_id for record in ordered)
    duplicates = sorted(object_id for object_id, count in counts.items() if count > 1)
    if duplicates:
        raise CorpusError(f"duplicate object ids in the corpus: {duplicates[:5]}")
    return [ordered[i : i + objects_per_shard] for i in range(0, len(ordered), objects_per_shard)]


def shard_name(index: int, prefix: str = "shard") -> str:
    """File stem of shard ``index``: ``shard_00000`` (training), ``heldout_00000`` (held out)."""
    return f"{prefix}_{index:05d}"


def heldout_rank(object_id: str) -> bytes:
    """The key that orders objects for the held-out draw: sha256 of the id (no seed, no listing order)."""
    return hashlib.sha256(object_id.encode("utf-8")).digest()


def split_heldout(records: list[MeshRecord], n_heldout: int) -> tuple[list[MeshRecord], list[MeshRecord]]:
    """Split a listed corpus into (training, held-out): the ``n_heldout`` objects whose id hashes
    lowest (:func:`heldout_rank`) are held out, and left out of the training records.

    The draw depends only on the ids, so it is the same on every machine and in every run, and
    it is spread over the categories as the hash spreads (no category is favoured).

    Raises:
        CorpusError: ``n_heldout`` is negative or leaves no training object.
    """
    if n_heldout < 0 or n_heldout >= len(records):
        raise CorpusError(f"cannot hold out {n_heldout} of the corpus's {len(records)} objects "
                          "(corpus.heldout_objects must be at least 0 and leave training objects)")
    held = {record.object_id for record in sorted(records, key=lambda r: heldout_rank(r.object_id))[:n_heldout]}
    return ([record for record in records if record.object_id not in held],
            [record for record in records if record.object_id in held])


def write_manifest(records: list[MeshRecord], path: Path) -> None:
    """Write a manifest TSV atomically."""
    with atomic_path(Path(path)) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        writer.writerows((r.object_id, r.category, r.path) for r in records)


def read_manifest(path: Path) -> list[MeshRecord]:
    """Read a manifest TSV written by :func:`write_manifest`."""
    path = Path(path)
    with open(path, newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None or tuple(header) != MANIFEST_COLUMNS:
            raise CorpusError(f"{path}: expected the header {MANIFEST_COLUMNS}, found {header}")
        rows = []
        for line_number, row in enumerate(reader, start=2):
            if len(row) != len(MANIFEST_COLUMNS):
                raise CorpusError(f"{path}:{line_number}: expected {len(MANIFEST_COLUMNS)} columns, found {len(row)}")
            rows.append(MeshRecord(*row))
    return rows


def write_shard_manifests(records: list[MeshRecord], objects_per_shard: int, out_dir: Path,
                          prefix: str = "shard") -> int:
    """Write ``manifest.tsv`` (the whole listing) and ``shards/<prefix>_NNNNN.tsv`` into ``out_dir``.

    Returns:
        The number of shards.
    """
    out_dir = Path(out_dir)
    shards = split_into_shards(records, objects_per_shard)
    write_manifest(sorted(records, key=lambda r: r.object_id), out_dir / "manifest.tsv")
    for index, shard in enumerate(shards):
        write_manifest(shard, out_dir / "shards" / f"{shard_name(index, prefix)}.tsv")
    return len(shards)
