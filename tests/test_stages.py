"""The render and pack stages on a shard with bad meshes, through real BlenderProc renders."""

from __future__ import annotations

import io
from pathlib import Path

import h5py
import numpy as np
import pytest

from picat.demo.mesh_files import save_part_mesh
from picat.demo.recipes import generate_shape
from picat.manifests import MeshRecord, write_manifest
from picat.shards import validate_shard
from picat.stages.pack import pack_shard
from picat.stages.render import render_shard

RENDER = {"engine": "workbench", "cycles_samples": 16, "resolution": 128, "camera_distance": 2.5,
          "fov_deg": 50.0, "threads": 2}
# A Z-up box written with ModelNet's broken header (counts on the "OFF" line).
BROKEN_OFF = ("OFF8 6 0\n0 0 0\n1 0 0\n1 2 0\n0 2 0\n0 0 3\n1 0 3\n1 2 3\n0 2 3\n"
              "4 0 3 2 1\n4 4 5 6 7\n4 0 1 5 4\n4 1 2 6 5\n4 2 3 7 6\n4 3 0 4 7\n")


@pytest.fixture(scope="module")
def mixed_shard(render_env: Path, tmp_path_factory) -> tuple[Path, Path, dict, dict]:
    folder = tmp_path_factory.mktemp("stages")
    chair = folder / "chair.obj"
    save_part_mesh(generate_shape("chair", 3), chair)
    (folder / "box.off").write_text(BROKEN_OFF)
    (folder / "nan.obj").write_text("v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n")
    (folder / "garbage.obj").write_bytes(b"\x00\x01\x02 not a mesh")
    records = [
        MeshRecord("a_chair", "chair", str(chair)),
        MeshRecord("b_box", "box", str(folder / "box.off")),
        MeshRecord("c_nan", "chair", str(folder / "nan.obj")),
        MeshRecord("d_missing", "chair", str(folder / "missing" / "model.obj")),
        MeshRecord("e_garbage", "chair", str(folder / "garbage.obj")),
    ]
    write_manifest(records, folder / "manifest.tsv")
    log = io.StringIO()
    render_counts = render_shard(folder / "manifest.tsv", folder / "renders.h5", render_env, RENDER, "y", log=log)
    pack_counts = pack_shard(folder / "manifest.tsv", folder / "renders.h5", folder / "shard.h5", 512, 0, "demo",
                             log=log)
    return folder, log, render_counts, pack_counts


def test_bad_meshes_are_recorded_not_dropped(mixed_shard):
    folder, log, render_counts, pack_counts = mixed_shard
    assert render_counts == {"rendered": 2, "skipped": 3}
    assert pack_counts == {"objects": 2, "skipped": 3}
    summary = validate_shard(folder / "shard.h5", check_projection=2)
    reasons = {s["object_id"]: s["reason"] for s in summary["skipped"]}
    assert set(reasons) == {"c_nan", "d_missing", "e_garbage"}
    assert "not finite" in reasons["c_nan"] and "does not exist" in reasons["d_missing"]
    for object_id in reasons:  # ... and each is in the job's log with its file
        assert f"skipped {object_id}" in log.getvalue()
    assert summary["categories"] == {"box": 1, "chair": 1}


def test_broken_off_header_and_obj_both_render_where_their_points_project(mixed_shard):
    folder = mixed_shard[0]
    summary = validate_shard(folder / "shard.h5", check_projection=2)
    assert set(summary["min_fraction_on_mask"]) == {"a_chair", "b_box"}
    assert min(summary["min_fraction_on_mask"].values()) >= 0.95
    with h5py.File(folder / "shard.h5") as shard:
        # the box is 1 x 2 x 3: normalised, its longest (file z) side spans the unit sphere's
        # diameter times 3 / sqrt(14)
        box = shard["points"][1]
        extent = box.max(axis=0) - box.min(axis=0)
        np.testing.assert_allclose(extent, np.array([1, 2, 3]) * 2 / np.sqrt(14), atol=0.02)
        assert shard["source_paths"][1].decode().endswith("box.off")


def test_shard_where_every_mesh_fails_is_an_error(render_env, tmp_path):
    (tmp_path / "nan.obj").write_text("v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n")
    write_manifest([MeshRecord("x", "c", str(tmp_path / "nan.obj"))], tmp_path / "manifest.tsv")
    with pytest.raises(RuntimeError, match="every mesh of the shard failed to load.*not finite"):
        render_shard(tmp_path / "manifest.tsv", tmp_path / "renders.h5", render_env, RENDER, "y", log=io.StringIO())
    assert not list(tmp_path.glob("renders.h5*"))


def test_demo_corpus_takes_its_category_set_from_the_settings(tmp_path):
    """corpus.categories "all" spreads the corpus and its held-out objects over all 25 categories;
    the default is the demo's 13, and the first objects of both listings are the same meshes."""
    from picat.demo.part_mesh import ALL_CATEGORIES, CATEGORIES
    from picat.stages.corpus import build_corpus, demo_categories, heldout_demo_objects

    corpus = {"kind": "demo", "n_objects": 30, "seed": 0, "up_axis": "y", "heldout_objects": 26}
    assert demo_categories(corpus) == CATEGORIES and demo_categories({**corpus, "categories": "all"}) == ALL_CATEGORIES
    build_corpus(corpus, 30, tmp_path / "demo", log=io.StringIO())
    build_corpus({**corpus, "categories": "all"}, 30, tmp_path / "all", log=io.StringIO())
    listed = {name: (tmp_path / name / "shards" / "shard_00000.tsv").read_text().splitlines()
              for name in ("demo", "all")}
    categories = {name: {line.split("\t")[1] for line in lines[1:]} for name, lines in listed.items()}
    assert categories["demo"] == set(CATEGORIES) and categories["all"] == set(ALL_CATEGORIES)
    assert listed["demo"][1] == listed["all"][1].replace("/all/", "/demo/")  # object 0: same id, category, seed
    held = heldout_demo_objects(26, 0, ALL_CATEGORIES)
    assert {category for _, category, _ in held} == set(ALL_CATEGORIES)
    assert held[:1] == heldout_demo_objects(1, 0)
    with pytest.raises(ValueError, match="corpus.categories"):
        demo_categories({**corpus, "categories": "every"})
