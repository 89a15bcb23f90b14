"""The corpus step: produce (demo) or list (real datasets) the meshes and cut shard manifests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, TextIO

from picat.demo.mesh_files import save_part_mesh
from picat.demo.recipes import demo_objects, generate_shape
from picat.manifests import MeshRecord, list_mesh_folder, list_shapenetcore, write_shard_manifests


def generate_demo_meshes(n_objects: int, seed: int, out_dir: Path, log: TextIO = sys.stderr) -> list[MeshRecord]:
    """Write the demo suite's synthetic meshes as ``<out_dir>/<category>/<object_id>.obj``
    (+ ``.labels.npy`` per-face part labels) and return their records."""
    records = []
    for index, (object_id, category, shape_seed) in enumerate(demo_objects(n_objects, seed)):
        path = Path(out_dir) / category / f"{object_id}.obj"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_part_mesh(generate_shape(category, shape_seed), path)
        records.append(MeshRecord(object_id, category, str(path)))
        if (index + 1) % 50 == 0 or index + 1 == n_objects:
            print(f"[corpus] generated {index + 1}/{n_objects} demo meshes", file=log)
    return records


def list_corpus(corpus: dict[str, Any], mesh_dir: Path, log: TextIO = sys.stderr) -> list[MeshRecord]:
    """Records of the corpus described by a validated ``corpus`` config block.

    Args:
        corpus: the suite's ``corpus`` settings (kind, root, n_objects, seed, splits).
        mesh_dir: where the demo kind writes its generated meshes.
    """
    kind = corpus["kind"]
    if kind == "demo":
        return generate_demo_meshes(corpus["n_objects"], corpus["seed"], mesh_dir, log)
    if kind == "shapenetcore":
        return list_shapenetcore(Path(corpus["root"]))
    if kind == "modelnet_off":
        return list_mesh_folder(Path(corpus["root"]), splits=corpus.get("splits", ["train"]))
    if kind == "mesh_folder":
        return list_mesh_folder(Path(corpus["root"]))
    raise ValueError(f"unknown corpus kind {kind!r}")


def build_corpus(corpus: dict[str, Any], objects_per_shard: int, out_dir: Path, log: TextIO = sys.stderr) -> int:
    """List (or generate) the corpus and write its manifests into ``out_dir``; returns the shard count."""
    out_dir = Path(out_dir)
    records = list_corpus(corpus, out_dir / "meshes", log)
    count = write_shard_manifests(records, objects_per_shard, out_dir)
    print(f"[corpus] {len(records)} meshes in {count} shards of at most {objects_per_shard}", file=log)
    return count
