"""The shard schema, the atomic writer, validation, and the pack step on a render file the
test writes itself (Blender is exercised in test_render.py and test_workflow.py)."""

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from picat.atomic import temporary_sibling
from picat.cli import main
from picat.geometry import dodecahedron_cameras, project_points, uv_to_pixels
from picat.manifests import MeshRecord, write_manifest
from picat.meshes import load_mesh, sample_surface
from picat.shards import STRING, ShardError, ShardObject, ShardWriter, SkippedMesh, validate_shard, write_index
from picat.stages.pack import object_seed, pack_shard

CUBE_OBJ = """v 0 0 0\nv 2 0 0\nv 2 2 0\nv 0 2 0\nv 0 0 2\nv 2 0 2\nv 2 2 2\nv 0 2 2
f 1 3 2\nf 1 4 3\nf 5 6 7\nf 5 7 8\nf 1 2 6\nf 1 6 5\nf 2 3 7\nf 2 7 6\nf 3 4 8\nf 3 8 7\nf 4 1 5\nf 4 5 8
"""
SIZE = 32


def strings(group, name, values):
    group.create_dataset(name, data=np.array(values, dtype=object), dtype=STRING, shape=(len(values),))


def silhouette_masks(points, views, projs):
    """Masks of the pixels that dense surface samples project to: a stand-in for renders."""
    masks = np.zeros((len(views), SIZE, SIZE), bool)
    for index, (view, proj) in enumerate(zip(views, projs, strict=True)):
        uv, _ = project_points(points, view, proj)
        rows, cols, inside = uv_to_pixels(uv, SIZE, SIZE)
        masks[index, rows[inside], cols[inside]] = True
    return masks


def write_render_file(path: Path, meshes: dict, skipped: list[tuple[str, str, str]]) -> None:
    """A render file as the render step leaves it."""
    views, projs = dodecahedron_cameras(2.5, 50.0)
    with h5py.File(path, "w") as f:
        ids = list(meshes)
        strings(f, "object_ids", ids)
        masks = np.stack([silhouette_masks(sample_surface(mesh, 20000, seed=99)[0], views, projs)
                          for mesh in meshes.values()])
        f["masks"] = masks
        f["images"] = np.where(masks[..., None], 80, 255).astype(np.uint8).repeat(3, axis=-1)
        f["world_from_file"] = np.stack([mesh.world_from_file for mesh in meshes.values()])
        f["view_matrices"], f["proj_matrices"] = views, projs
        group = f.create_group("skipped")
        for column, name in enumerate(("object_ids", "paths", "reasons")):
            strings(group, name, [row[column] for row in skipped])
        f.attrs["settings"] = json.dumps({"render": {"engine": "test"}})


@pytest.fixture
def packed(tmp_path):
    cube = tmp_path / "cube.obj"
    cube.write_text(CUBE_OBJ)
    records = [MeshRecord("a_cube", "box", str(cube)), MeshRecord("b_broken", "box", str(tmp_path / "gone.obj"))]
    write_manifest(records, tmp_path / "manifest.tsv")
    write_render_file(tmp_path / "renders.h5", {"a_cube": load_mesh(cube)},
                      [("b_broken", records[1].path, "file does not exist")])
    counts = pack_shard(tmp_path / "manifest.tsv", tmp_path / "renders.h5", tmp_path / "shard.h5", n_points=64, seed=5,
                        suite="demo")
    return tmp_path / "shard.h5", counts


def test_packed_shard_has_the_schema_and_records_skips(packed):
    path, counts = packed
    assert counts == {"objects": 1, "skipped": 1}
    summary = validate_shard(path, check_projection=1)
    assert summary["objects"] == 1 and summary["points_per_object"] == 64 and summary["views"] == 20
    assert summary["skipped"] == [{"object_id": "b_broken", "path": str(path.parent / "gone.obj"),
                                   "reason": "file does not exist"}]
    assert summary["settings"]["sampling"] == {"n_points": 64, "seed": 5}
    assert summary["min_fraction_on_mask"]["a_cube"] > 0.95
    with h5py.File(path) as f:
        assert f["images"].compression == "gzip" and f["images"].chunks == (1, 1, SIZE, SIZE, 3)
        assert f["points"].dtype == np.float32 and f["view_matrices"].shape == (1, 20, 4, 4)
        assert f.attrs["schema_version"] == 1 and "ndc_x" in f.attrs["convention"]
    assert not list(path.parent.glob(".*.tmp-*"))


def test_points_are_deterministic_per_object(packed, tmp_path):
    path, _ = packed
    pack_shard(tmp_path / "manifest.tsv", tmp_path / "renders.h5", tmp_path / "again.h5", n_points=64, seed=5)
    with h5py.File(path) as a, h5py.File(tmp_path / "again.h5") as b:
        np.testing.assert_array_equal(a["points"][()], b["points"][()])
    assert object_seed(5, "a_cube") != object_seed(6, "a_cube") != object_seed(5, "b_cube")
    # Another sampling seed samples other points of the same surface.
    pack_shard(tmp_path / "manifest.tsv", tmp_path / "renders.h5", tmp_path / "other.h5", n_points=64, seed=6)
    with h5py.File(path) as a, h5py.File(tmp_path / "other.h5") as b:
        assert not np.array_equal(a["points"][()], b["points"][()])


def test_changed_mesh_after_render_is_an_error(packed, tmp_path):
    (tmp_path / "cube.obj").write_text(CUBE_OBJ.replace("v 2 2 2", "v 3 3 3"))
    with pytest.raises(ValueError, match="changed since it was rendered"):
        pack_shard(tmp_path / "manifest.tsv", tmp_path / "renders.h5", tmp_path / "x.h5", n_points=8, seed=0)
    assert not (tmp_path / "x.h5").exists() and not temporary_sibling(tmp_path / "x.h5").exists()


def _item(n_points=4, views=2):
    return ShardObject("o", "c", "p", np.zeros((n_points, 3), np.float32),
                       np.tile([0, 0, 1.0], (n_points, 1)).astype(np.float32),
                       np.zeros((views, 8, 8, 3), np.uint8), np.ones((views, 8, 8), bool),
                       np.tile(np.eye(4), (views, 1, 1)), np.tile(np.eye(4), (views, 1, 1)), np.eye(4))


def test_writer_is_atomic_on_failure(tmp_path):
    path = tmp_path / "s.h5"
    with pytest.raises(RuntimeError), ShardWriter(path) as writer:
        writer.add(_item())
        raise RuntimeError("killed")
    assert not path.exists() and not list(tmp_path.iterdir())


def test_shard_where_every_mesh_failed_is_an_error(tmp_path):
    with (
        pytest.raises(ShardError, match="every mesh of the shard failed.*m1: no faces"),
        ShardWriter(tmp_path / "s.h5") as writer,
    ):
        writer.skip(SkippedMesh("m1", "/x.obj", "no faces"))
    assert not list(tmp_path.iterdir())


def test_validation_reports_problems(tmp_path, packed):
    path, _ = packed
    with h5py.File(path, "r+") as f:
        f["points"][0, 0] = [np.nan, 0, 0]
        del f["skipped/reasons"]
    with pytest.raises(ShardError, match="missing datasets \\['skipped/reasons'\\]"):
        validate_shard(path)
    with h5py.File(path, "r+") as f:
        f.create_dataset("skipped/reasons", data=np.array(["x", "y"], dtype=object), dtype=STRING)
    with pytest.raises(ShardError, match="non-finite.*differ in length"):
        validate_shard(path)
    (tmp_path / "junk.h5").write_bytes(b"not hdf5")
    with pytest.raises(ShardError, match="junk.h5: not a readable HDF5"):
        validate_shard(tmp_path / "junk.h5")


def test_projection_check_of_a_shard_with_a_missing_view_is_one_shard_error(packed):
    """Views, projections and masks that do not pair up are reported in the ShardError (naming the
    file and the dataset), not as a bare error from pairing them for the projection check."""
    path, _ = packed
    with h5py.File(path, "r+") as f:
        views = f["view_matrices"][()]
        del f["view_matrices"]
        f.create_dataset("view_matrices", data=views[:, :-1])
    with pytest.raises(ShardError, match=r"shard\.h5: view_matrices is \(1, 19, 4, 4\)"):
        validate_shard(path, check_projection=1)


def test_validate_and_index_commands(packed, tmp_path, capsys):
    path, _ = packed
    assert main(["validate", str(path), "--check-projection", "1"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "objects: 1 x 64 points" in out and "b_broken" in out and "projection check" in out
    index = write_index([path], tmp_path / "index.json")
    assert index["objects"] == 1 and index["skipped"] == 1
    # The rule's command, through picat/stages/shard_index.py: the same index, written whole.
    assert main(["index", "--out", str(tmp_path / "by_command.json"), str(path)]) == 0
    assert "1 objects in 1 shards, 1 skipped" in capsys.readouterr().out
    assert json.loads((tmp_path / "by_command.json").read_text()) == index
    assert main(["validate", str(tmp_path / "missing.h5")]) == 1
    assert "missing.h5: shard file does not exist" in capsys.readouterr().err
