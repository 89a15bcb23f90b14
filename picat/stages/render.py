"""The render step of one shard: check and normalise its meshes, then render them in Blender.

Runs in the main environment. Every mesh is loaded with trimesh first: unreadable, empty,
face-less or non-finite meshes are recorded as skipped (never dropped silently), the rest
get the normalisation (centre, unit sphere) that sampling uses too. OBJ files go to Blender
as they are (keeping their materials); other formats are converted to a plain OBJ first,
since BlenderProc has no OFF loader.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import h5py
import numpy as np

from picat import __version__
from picat.atomic import atomic_path
from picat.geometry import camera_set
from picat.manifests import read_manifest
from picat.meshes import MeshError, load_mesh, write_obj
from picat.render.launch import RenderItem, RenderJob, render_objects
from picat.shards import SkippedMesh, read_strings, write_strings


def render_shard(
    manifest: Path, output: Path, env_dir: Path, render: dict[str, Any], up_axis: str,
    log: TextIO = sys.stderr,
) -> dict[str, int]:
    """Render every usable mesh of a shard manifest from the 20 dodecahedron cameras (or their cube 8).

    Args:
        manifest: the shard's manifest TSV.
        output: the render file to write (HDF5: object_ids, images, masks, world_from_file,
            view_matrices, proj_matrices, skipped/*, attribute ``settings``).
        env_dir: the BlenderProc render environment.
        render: the suite's ``render`` settings (engine, cycles_samples, resolution,
            camera_distance, fov_deg, threads, and optionally cameras: "dodecahedron", the
            default, or "cube", :data:`picat.geometry.CAMERA_SETS`).
        up_axis: world axis that is up in the images.

    Returns:
        Counts: {"rendered": n, "skipped": k}.
    """
    output = Path(output)
    records = read_manifest(manifest)
    views, projs = camera_set(render["camera_distance"], render["fov_deg"], up_axis,
                              render.get("cameras", "dodecahedron"))
    skipped: list[SkippedMesh] = []
    items: list[RenderItem] = []
    started = time.time()
    # Blender writes the render file under the temporary name; it is completed here and only
    # then renamed onto ``output``.
    with atomic_path(output) as blender_output:
        with tempfile.TemporaryDirectory(prefix="picat-render-") as work_dir:
            for record in records:
                try:
                    mesh = load_mesh(record.path)
                except MeshError as error:
                    skipped.append(SkippedMesh(record.object_id, record.path, error.reason))
                    print(f"[render] skipped {record.object_id}: {error}", file=log)
                    continue
                obj_path = record.path
                if Path(record.path).suffix.lower() != ".obj":
                    obj_path = str(Path(work_dir) / f"{len(items)}.obj")
                    write_obj(mesh.vertices, mesh.faces, Path(obj_path))
                items.append(RenderItem(record.object_id, obj_path, mesh.world_from_file.tolist()))
            if not items:
                reasons = "; ".join(f"{s.object_id}: {s.reason}" for s in skipped[:5])
                raise RuntimeError(f"{manifest}: every mesh of the shard failed to load ({reasons})")
            print(f"[render] {len(items)} meshes to render, {len(skipped)} skipped", file=log)
            job = RenderJob(
                items=items, view_matrices=views.tolist(), fov_deg=render["fov_deg"],
                width=render["resolution"], height=render["resolution"], engine=render["engine"],
                cycles_samples=render["cycles_samples"], threads=render["threads"], output=str(blender_output),
            )
            render_objects(job, Path(env_dir), log=log)
        world_from_file = {item.object_id: np.asarray(item.world_from_file) for item in items}
        paths = {record.object_id: record.path for record in records}
        with h5py.File(blender_output, "r+") as rendered:
            rendered_ids = read_strings(rendered["object_ids"])
            for object_id, reason in zip(read_strings(rendered["failed/object_ids"]),
                                         read_strings(rendered["failed/reasons"]), strict=True):
                skipped.append(SkippedMesh(object_id, paths[object_id], f"at rendering: {reason}"))
            if not rendered_ids:  # atomic_path removes the temporary render file
                raise RuntimeError(f"{manifest}: Blender rendered none of the shard's meshes: "
                                   f"{[s.reason for s in skipped[:5]]}")
            rendered.create_dataset("world_from_file", data=np.stack([world_from_file[i] for i in rendered_ids]))
            rendered.create_dataset("view_matrices", data=views)
            rendered.create_dataset("proj_matrices", data=projs)
            group = rendered.create_group("skipped")
            write_strings(group, "object_ids", [s.object_id for s in skipped])
            write_strings(group, "paths", [s.path for s in skipped])
            write_strings(group, "reasons", [s.reason for s in skipped])
            settings = {"render": render, "up_axis": up_axis, "picat_version": __version__}
            rendered.attrs["settings"] = json.dumps(settings, sort_keys=True)
    elapsed = time.time() - started
    n_views = len(rendered_ids) * len(views)
    print(f"[render] {len(rendered_ids)} objects, {n_views} views in {elapsed:.1f} s "
          f"({elapsed / n_views:.3f} s/view incl. start-up); {len(skipped)} skipped", file=log)
    return {"rendered": len(rendered_ids), "skipped": len(skipped)}
