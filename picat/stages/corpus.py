"""The corpus step: produce (demo) or list (real datasets) the meshes and cut shard manifests.

Two listings come out of one corpus setting:

* the training corpus (``picat corpus``): ``shard_NNNNN`` manifests, what ``picat pretrain`` reads;
* the held-out objects (``picat corpus --heldout``): ``heldout_NNNNN`` manifests, rendered,
  packed and encoded like the training shards but never given to pre-training; the
  correspondence metric and Figure 4 read them (docs/pretraining.md, "Held-out objects").

Demo corpus: the held-out objects are generated apart from the training objects, with shape
seeds in [2**33, 2**33 + 2**32) (``HELDOUT_SEED_BASE``): the training corpus's seeds are
uint32 (below 2**32) and the benchmark stand-ins' lie in [2**32, 2**33)
(:mod:`picat.demo.seeding`), so a held-out shape is never a training or stand-in shape, and
the training corpus is the same with or without held-out objects.

Real corpora (ShapeNetCore, mesh folders): the ``corpus.heldout_objects`` objects whose ids
hash lowest are held out (:func:`picat.manifests.split_heldout`) and left out of the training
shards, so those shards hold that many objects fewer than the whole listing.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from picat.demo.mesh_files import save_part_mesh
from picat.demo.part_mesh import CATEGORIES, categories_of
from picat.demo.recipes import demo_objects, generate_shape
from picat.manifests import MeshRecord, list_mesh_folder, list_shapenetcore, split_heldout, write_shard_manifests

HELDOUT_SEED_BASE = 2**33  # above the training corpus's uint32 seeds and the stand-ins' [2**32, 2**33)
HELDOUT_SPAWN_TAG = 7  # first element of the held-out objects' spawn keys (the training corpus's keys are (i,))


def demo_categories(block: dict[str, Any], key: str = "corpus.categories") -> tuple[str, ...]:
    """The categories a demo-kind block asks for (:func:`picat.demo.part_mesh.categories_of`)."""
    return categories_of(block, key)


def heldout_demo_objects(n_objects: int, seed: int,
                         categories: tuple[str, ...] = CATEGORIES) -> list[tuple[str, str, int]]:
    """The demo suite's held-out objects: ``n_objects`` tuples (object_id, category, shape_seed).

    Object ``i`` has category ``categories[i % len(categories)]`` (round-robin, as the training
    corpus), id ``f"{category}_heldout_{i // len(categories):04d}"`` (never a training id:
    those are ``f"{category}_{NNNN}"``) and shape seed ``HELDOUT_SEED_BASE`` plus the first
    uint32 of ``SeedSequence(seed, spawn_key=(HELDOUT_SPAWN_TAG, i))``; entry i does not
    depend on ``n_objects``.
    """
    if isinstance(n_objects, bool) or not isinstance(n_objects, (int, np.integer)) or n_objects < 0:
        raise ValueError(f"n_objects must be a non-negative integer, got {n_objects!r}")
    listing = []
    for i in range(int(n_objects)):
        category = categories[i % len(categories)]
        word = np.random.SeedSequence(int(seed), spawn_key=(HELDOUT_SPAWN_TAG, i)).generate_state(1, dtype=np.uint32)
        listing.append((f"{category}_heldout_{i // len(categories):04d}", category, HELDOUT_SEED_BASE + int(word[0])))
    return listing


def _write_demo_meshes(objects: list[tuple[str, str, int]], out_dir: Path, log: TextIO) -> list[MeshRecord]:
    records = []
    for index, (object_id, category, shape_seed) in enumerate(objects):
        path = Path(out_dir) / category / f"{object_id}.obj"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_part_mesh(generate_shape(category, shape_seed), path)
        records.append(MeshRecord(object_id, category, str(path)))
        if (index + 1) % 50 == 0 or index + 1 == len(objects):
            print(f"[corpus] generated {index + 1}/{len(objects)} demo meshes", file=log)
    return records


def generate_demo_meshes(n_objects: int, seed: int, out_dir: Path, log: TextIO = sys.stderr,
                         categories: tuple[str, ...] = CATEGORIES) -> list[MeshRecord]:
    """Write the demo suite's synthetic meshes as ``<out_dir>/<category>/<object_id>.obj``
    (+ ``.labels.npy`` per-face part labels) and return their records."""
    return _write_demo_meshes(demo_objects(n_objects, seed, categories), out_dir, log)


def _list_real(corpus: dict[str, Any]) -> list[MeshRecord]:
    kind = corpus["kind"]
    if kind == "shapenetcore":
        return list_shapenetcore(Path(corpus["root"]))
    if kind == "modelnet_off":
        return list_mesh_folder(Path(corpus["root"]), splits=corpus.get("splits", ["train"]))
    if kind == "mesh_folder":
        return list_mesh_folder(Path(corpus["root"]))
    raise ValueError(f"unknown corpus kind {kind!r}")


def list_corpus(corpus: dict[str, Any], mesh_dir: Path, log: TextIO = sys.stderr) -> list[MeshRecord]:
    """Records of the training corpus described by a validated ``corpus`` config block.

    Args:
        corpus: the suite's ``corpus`` settings (kind, root, n_objects, seed, splits,
            heldout_objects: a real corpus's held-out objects are left out).
        mesh_dir: where the demo kind writes its generated meshes.
    """
    if corpus["kind"] == "demo":
        return generate_demo_meshes(corpus["n_objects"], corpus["seed"], mesh_dir, log, demo_categories(corpus))
    return split_heldout(_list_real(corpus), int(corpus.get("heldout_objects", 0)))[0]


def list_heldout(corpus: dict[str, Any], mesh_dir: Path, log: TextIO = sys.stderr) -> list[MeshRecord]:
    """Records of the held-out objects (``corpus.heldout_objects`` of them; none when absent)."""
    count = int(corpus.get("heldout_objects", 0))
    if corpus["kind"] == "demo":
        return _write_demo_meshes(heldout_demo_objects(count, corpus["seed"], demo_categories(corpus)), mesh_dir, log)
    return split_heldout(_list_real(corpus), count)[1]


def build_corpus(corpus: dict[str, Any], objects_per_shard: int, out_dir: Path, log: TextIO = sys.stderr,
                 heldout: bool = False) -> int:
    """List (or generate) the corpus and write its manifests into ``out_dir``; returns the shard count.

    Args:
        heldout: write the held-out objects' ``heldout_NNNNN`` manifests instead of the
            training corpus's ``shard_NNNNN``.
    """
    out_dir = Path(out_dir)
    if heldout:
        records = list_heldout(corpus, out_dir / "meshes", log)
        if not records:
            raise ValueError("corpus.heldout_objects is 0: there are no held-out objects to list")
    else:
        records = list_corpus(corpus, out_dir / "meshes", log)
    count = write_shard_manifests(records, objects_per_shard, out_dir, prefix="heldout" if heldout else "shard")
    kind = "held-out objects" if heldout else "meshes"
    print(f"[corpus] {len(records)} {kind} in {count} shards of at most {objects_per_shard}", file=log)
    return count
