from pathlib import Path

import pytest

from picat.manifests import (
    CorpusError,
    MeshRecord,
    list_mesh_folder,
    list_shapenetcore,
    read_manifest,
    split_into_shards,
    write_shard_manifests,
)


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("v 0 0 0\n")
    return path


def test_shapenetcore_v1_and_v2_layouts(tmp_path):
    v1 = touch(tmp_path / "v1" / "02691156" / "aaa" / "model.obj")
    v2 = touch(tmp_path / "v2" / "03001627" / "bbb" / "models" / "model_normalized.obj")
    assert list_shapenetcore(tmp_path / "v1") == [MeshRecord("02691156_aaa", "02691156", str(v1))]
    assert list_shapenetcore(tmp_path / "v2") == [MeshRecord("03001627_bbb", "03001627", str(v2))]


def test_shapenet_model_without_mesh_is_listed_not_dropped(tmp_path):
    (tmp_path / "02691156" / "ccc").mkdir(parents=True)
    records = list_shapenetcore(tmp_path)
    assert records[0].path.endswith("ccc/model.obj")  # the render step records it as skipped


def test_missing_folder_names_path_and_layout(tmp_path):
    with pytest.raises(CorpusError, match=f"{tmp_path / 'nope'} does not exist.*synset"):
        list_shapenetcore(tmp_path / "nope")
    with pytest.raises(CorpusError, match="does not exist"):
        list_mesh_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CorpusError, match="no ShapeNetCore models"):
        list_shapenetcore(tmp_path / "empty")


def test_modelnet_layout_with_splits(tmp_path):
    touch(tmp_path / "bed" / "train" / "bed_0001.off")
    touch(tmp_path / "bed" / "test" / "bed_0600.off")
    touch(tmp_path / "chair" / "train" / "chair_0001.off")
    train = list_mesh_folder(tmp_path, splits=["train"])
    assert [(r.object_id, r.category) for r in train] == [("bed_train_bed_0001", "bed"),
                                                          ("chair_train_chair_0001", "chair")]
    assert len(list_mesh_folder(tmp_path)) == 3


def test_genuine_samples_are_listed(fixtures):
    shapenet = list_shapenetcore(fixtures / "shapenetcore_v1")
    assert {r.category for r in shapenet} == {"02691156", "03001627"}
    assert all(Path(r.path).is_file() for r in shapenet)
    modelnet = list_mesh_folder(fixtures / "modelnet_off" / "OFF2MAT" / "ModelNet10", splits=["train"])
    assert len(modelnet) == 5 and {r.category for r in modelnet} == {"bathtub"}


def test_sharding_is_sorted_consecutive_and_round_trips(tmp_path):
    records = [MeshRecord(f"obj_{i:03d}", "c", f"/m/{i}.obj") for i in reversed(range(7))]
    shards = split_into_shards(records, 3)
    assert [len(s) for s in shards] == [3, 3, 1]
    assert [r.object_id for s in shards for r in s] == sorted(r.object_id for r in records)
    assert write_shard_manifests(records, 3, tmp_path) == 3
    assert read_manifest(tmp_path / "shards" / "shard_00002.tsv") == shards[2]
    with pytest.raises(CorpusError, match="duplicate object ids.*obj_001"):
        split_into_shards(records + [records[-2]], 3)


def test_bad_manifest_header(tmp_path):
    path = tmp_path / "m.tsv"
    path.write_text("id\tpath\nx\ty\n")
    with pytest.raises(CorpusError, match="m.tsv: expected the header"):
        read_manifest(path)
