"""Sample surface points for every rendered object and pack them with its views into a shard."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path
from typing import TextIO

import h5py
import numpy as np

from picat import __version__
from picat.manifests import read_manifest
from picat.meshes import MeshError, load_mesh, sample_surface
from picat.shards import ShardObject, ShardWriter, SkippedMesh, read_strings


def object_seed(seed: int, object_id: str) -> int:
    """Sampling seed of one object: depends on the global seed and the id only, so an
    object's points do not change when the corpus or the shard size changes."""
    digest = hashlib.sha256(f"{seed}:{object_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def pack_shard(
    manifest: Path, renders: Path, output: Path, n_points: int, seed: int, suite: str = "",
    log: TextIO = sys.stderr,
) -> dict[str, int]:
    """Write the shard ``output`` from a shard manifest and its render file.

    Objects the render step skipped stay skipped (with their reasons); an object whose mesh
    no longer matches the normalisation used for its renders is an error, because its points
    would not line up with its images.

    Returns:
        Counts: {"objects": packed, "skipped": recorded as skipped}.
    """
    records = {record.object_id: record for record in read_manifest(manifest)}
    started = time.time()
    with h5py.File(renders, "r") as rendered:
        rendered_ids = read_strings(rendered["object_ids"])
        settings = json.loads(rendered.attrs["settings"])
        settings["sampling"] = {"n_points": n_points, "seed": seed}
        views = rendered["view_matrices"][()].astype(np.float32)
        projs = rendered["proj_matrices"][()].astype(np.float32)
        attributes = {"suite": suite, "picat_version": __version__, "settings": settings}
        with ShardWriter(Path(output), attributes) as writer:
            for object_id, path, reason in zip(*(read_strings(rendered[f"skipped/{name}"])
                                                 for name in ("object_ids", "paths", "reasons")), strict=True):
                writer.skip(SkippedMesh(object_id, path, reason))
            for index, object_id in enumerate(rendered_ids):
                record = records.get(object_id)
                if record is None:
                    raise ValueError(f"{renders}: object {object_id!r} is not in the manifest {manifest}")
                try:
                    mesh = load_mesh(record.path)
                except MeshError as error:
                    writer.skip(SkippedMesh(object_id, record.path, f"at sampling: {error.reason}"))
                    print(f"[pack] skipped {object_id}: {error}", file=log)
                    continue
                world_from_file = rendered["world_from_file"][index]
                if not np.allclose(mesh.world_from_file, world_from_file, atol=1e-9):
                    raise ValueError(f"{record.path}: the mesh changed since it was rendered into {renders}; "
                                     "delete the render file to render it again")
                points, normals = sample_surface(mesh, n_points, object_seed(seed, object_id))
                writer.add(ShardObject(
                    object_id=object_id, category=record.category, source_path=record.path,
                    points=points, normals=normals, images=rendered["images"][index],
                    masks=rendered["masks"][index], view_matrices=views, proj_matrices=projs,
                    world_from_file=world_from_file,
                ))
                if (index + 1) % 10 == 0 or index + 1 == len(rendered_ids):
                    print(f"[pack] {index + 1}/{len(rendered_ids)} objects, {time.time() - started:.1f} s", file=log)
            counts = {"objects": writer.count, "skipped": len(writer.skipped)}
    return counts
