"""Segmentation stand-ins: written in ShapeNetPart's and S3DIS's genuine layouts, read by the real readers."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from picat.datasets.s3dis import S3DIS_CLASSES, convert_room, raw_rooms
from picat.datasets.shapenetpart import CATEGORY_PARTS, read_shapenetpart_txt
from picat.demo.part_mesh import PART_NAMES
from picat.demo.parts import PART_CATEGORIES, PART_LABELS, SHAPENETPART_LAYOUT, part_shape, write_shapenetpart_standin
from picat.demo.rooms import S3DIS_LAYOUT, write_s3dis_standin
from picat.stages.seg_standins import build_seg_standins

N_POINTS = 48
DENSITY = 30.0  # points per m2: rooms of a few thousand points


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def part_root(tmp_path_factory) -> Path:
    return write_shapenetpart_standin(tmp_path_factory.mktemp("part"), 2, 1, N_POINTS, seed=3, val_per_category=1)


@pytest.fixture(scope="module")
def room_root(tmp_path_factory) -> Path:
    return write_s3dis_standin(tmp_path_factory.mktemp("rooms"), [1, 5], 2, DENSITY, seed=4)


# ---------------------------------------------------------------------------------------
# ShapeNetPart


def test_part_table_maps_every_synthetic_part_onto_a_part_of_its_shapenetpart_category():
    for category, (name, synset) in PART_CATEGORIES.items():
        mapping = PART_LABELS[category]
        assert set(mapping) == set(PART_NAMES[category]), category
        assert set(mapping.values()) <= set(CATEGORY_PARTS[name]), category
        assert len(set(mapping.values())) == len(mapping), f"{category}: two parts share a label"
        assert re.fullmatch(r"0\d{7}", synset)


def test_real_reader_reads_every_split_with_the_mapped_labels(part_root):
    assert part_root.name == SHAPENETPART_LAYOUT
    names = sorted(name for name, _ in PART_CATEGORIES.values())
    seen_ids = set()
    for split, per_category in (("train", 2), ("val", 1), ("test", 1)):
        data = read_shapenetpart_txt(part_root, split)
        assert list(data.category_names) == names
        assert len(data) == per_category * len(names)
        assert np.bincount(data.categories, minlength=len(names)).tolist() == [per_category] * len(names)
        rows = zip(data.points, data.parts, data.categories, data.shape_ids, strict=True)
        for points, parts, category, shape_id in rows:
            assert points.shape == (N_POINTS, 6)
            radius = np.linalg.norm(points[:, :3], axis=1)
            assert radius.max() == pytest.approx(1.0, abs=1e-4)  # normalised into the unit sphere
            centre = (points[:, :3].min(axis=0) + points[:, :3].max(axis=0)) / 2
            np.testing.assert_allclose(centre, 0.0, atol=1e-4)
            np.testing.assert_allclose(np.linalg.norm(points[:, 3:], axis=1), 1.0, atol=1e-4)
            name = data.category_names[category]
            synthetic = next(c for c, (n, _) in PART_CATEGORIES.items() if n == name)
            assert set(parts.tolist()) <= set(PART_LABELS[synthetic].values())
            assert re.fullmatch(r"0\d{7}/[0-9a-f]{32}", shape_id)
            seen_ids.add(shape_id)
    assert len(seen_ids) == 4 * len(names)  # no shape in two splits


def test_points_and_labels_are_the_mapped_surface_samples(part_root):
    data = read_shapenetpart_txt(part_root, "train")
    chair = PART_CATEGORIES["chair"][1]
    shape = part_shape("chair", 0, "train", N_POINTS, seed=3)
    assert shape.shape_seed >= 2**32 and (shape.shape_seed - 2**32) >> 30 == 0  # held out, train split bits
    index = data.shape_ids.index(f"{chair}/{shape.shape_id}")
    np.testing.assert_allclose(data.points[index], shape.table[:, :6], atol=1e-6)
    assert data.parts[index].tolist() == shape.table[:, 6].astype(int).tolist()
    # Y up as ShapeNet: the legs are below the seat, the back above it.
    labels = PART_LABELS["chair"]
    y = data.points[index][:, 1]
    parts = data.parts[index]
    assert y[parts == labels["leg"]].mean() < y[parts == labels["seat"]].mean() < y[parts == labels["back"]].mean()


def test_split_lists_and_category_file_have_the_genuine_form(part_root):
    lines = (part_root / "synsetoffset2category.txt").read_text().splitlines()
    assert lines[0] == "Airplane\t02691156" and len(lines) == len(PART_CATEGORIES)
    entries = json.loads((part_root / "train_test_split" / "shuffled_test_file_list.json").read_text())
    assert all(re.fullmatch(r"shape_data/0\d{7}/[0-9a-f]{32}", e) for e in entries)
    # "shuffled": categories interleave rather than coming one block after another
    synsets = [e.split("/")[1] for e in entries]
    assert synsets != sorted(synsets)


def test_part_standin_is_deterministic_and_objects_do_not_depend_on_counts(tmp_path, part_root):
    small = write_shapenetpart_standin(tmp_path / "a", 1, 1, N_POINTS, seed=3, categories=("mug", "table"))
    again = write_shapenetpart_standin(tmp_path / "b", 1, 1, N_POINTS, seed=3, categories=("mug", "table"))
    assert _files(small) == _files(again)
    full = _files(part_root)
    for name, content in _files(small).items():
        if name.endswith(".txt") and "/" in name:  # the shape files of object 0
            assert full[name] == content
    other_seed = write_shapenetpart_standin(tmp_path / "c", 1, 1, N_POINTS, seed=4, categories=("mug", "table"))
    assert set(_files(other_seed)) != set(_files(small))


def test_part_writer_errors(tmp_path, part_root):
    with pytest.raises(FileExistsError, match="already exists"):
        write_shapenetpart_standin(part_root.parent, 1, 1, N_POINTS, seed=3)
    with pytest.raises(ValueError, match="n_points must be an integer >= 1"):
        write_shapenetpart_standin(tmp_path, 1, 1, 0, seed=3)
    with pytest.raises(ValueError, match="categories must be distinct names"):
        write_shapenetpart_standin(tmp_path, 1, 1, 8, seed=3, categories=("bed",))
    assert not list(tmp_path.iterdir())  # nothing half-written


# ---------------------------------------------------------------------------------------
# S3DIS


def test_rooms_convert_with_shell_and_objects(room_root):
    assert room_root.name == S3DIS_LAYOUT
    rooms = raw_rooms(room_root)
    assert [r.parent.name for r in rooms] == ["Area_1", "Area_1", "Area_5", "Area_5"]
    classes_seen = set()
    for room in rooms:
        assert re.fullmatch(r"(office|conferenceRoom|lounge|hallway)_\d+", room.name)
        array, remapped = convert_room(room)
        assert array.ndim == 2 and array.shape[1] == 7 and remapped == 0
        labels = array[:, 6].astype(int)
        assert labels.min() >= 0 and labels.max() < len(S3DIS_CLASSES)
        names = {S3DIS_CLASSES[i] for i in labels}
        assert {"floor", "ceiling", "wall", "door"} <= names
        classes_seen |= names
        colours = array[:, 3:6]
        assert np.all(colours == np.round(colours)) and colours.min() >= 0 and colours.max() <= 255
        # Z up, metres: floor at the bottom, ceiling 2.6-3.2 m above it, a room-sized footprint.
        floor = array[labels == S3DIS_CLASSES.index("floor"), 2]
        ceiling = array[labels == S3DIS_CLASSES.index("ceiling"), 2]
        assert np.ptp(floor) < 1e-3 and floor.min() == array[:, 2].min()
        assert 2.6 - 1e-3 <= ceiling.mean() - floor.mean() <= 3.2 + 1e-3
        extent = np.ptp(array[:, :2], axis=0)
        assert extent.min() >= 1.8 - 1e-3 and extent.max() <= 7.0 + 1e-3
        # Colour is informative: the floor's mean colour differs from the walls'.
        wall = colours[labels == S3DIS_CLASSES.index("wall")].mean(axis=0)
        assert np.abs(colours[labels == S3DIS_CLASSES.index("floor")].mean(axis=0) - wall).max() > 10
    objects = classes_seen - {"floor", "ceiling", "wall", "door"}
    assert len(objects) >= 4, objects
    assert "clutter" in objects


def test_room_file_holds_exactly_the_annotated_points(room_root):
    for room in raw_rooms(room_root):
        annotations = sorted((room / "Annotations").glob("*.txt"))
        assert all(re.fullmatch(r"[a-z]+_\d+\.txt", p.name) and p.name.rsplit("_", 1)[0] in S3DIS_CLASSES
                   for p in annotations)
        union = sorted(line for p in annotations for line in p.read_text().splitlines())
        whole = (room / f"{room.name}.txt").read_text().splitlines()
        assert sorted(whole) == union
        assert re.fullmatch(r"-?\d+\.\d{3} -?\d+\.\d{3} -?\d+\.\d{3} \d+ \d+ \d+", whole[0])


def test_rooms_are_deterministic_and_areas_differ(tmp_path, room_root):
    again = write_s3dis_standin(tmp_path, [5], 1, DENSITY, seed=4)
    first = raw_rooms(room_root)[2]
    assert first.parent.name == "Area_5"
    assert _files(again / "Area_5" / first.name) == _files(first)  # room 0 of Area 5, whatever else was asked
    other = write_s3dis_standin(tmp_path / "other_seed", [5], 1, DENSITY, seed=5)
    assert _files(other / "Area_5" / first.name) != _files(first)  # another seed, another room
    arrays = [convert_room(room)[0] for room in raw_rooms(room_root)]
    for i in range(len(arrays)):
        for j in range(i + 1, len(arrays)):
            assert arrays[i].shape != arrays[j].shape or not np.array_equal(arrays[i], arrays[j])
    # Rooms of one area share its frame without overlapping.
    (a_lo, a_hi), (b_lo, b_hi) = [(a[:, 0].min(), a[:, 0].max()) for a in arrays[:2]]
    assert a_hi < b_lo or b_hi < a_lo


def test_room_writer_errors(tmp_path, room_root):
    with pytest.raises(ValueError, match="areas must be distinct S3DIS area numbers"):
        write_s3dis_standin(tmp_path, [7], 1, DENSITY, seed=0)
    with pytest.raises(ValueError, match="points_per_m2 must be a positive number"):
        write_s3dis_standin(tmp_path, [1], 1, 0.0, seed=0)
    with pytest.raises(FileExistsError, match="already exists"):
        write_s3dis_standin(room_root.parent, [1], 1, DENSITY, seed=0)


# ---------------------------------------------------------------------------------------
# The entry point


SETTINGS = {"seed": 1, "part": {"train_per_category": 1, "test_per_category": 1, "n_points": 16,
                                "categories": ["mug", "guitar"]},
            "rooms": {"areas": [2], "rooms_per_area": 1, "points_per_m2": 10}}


def test_build_writes_both_atomically_and_rebuilds_in_place(tmp_path):
    out = tmp_path / "seg"
    summary = build_seg_standins(out, SETTINGS)
    assert sorted(p.name for p in out.iterdir()) == sorted([SHAPENETPART_LAYOUT, S3DIS_LAYOUT, "seg_standins.json"])
    assert summary["shapenetpart"]["train"] == 2 and summary["shapenetpart"]["val"] == 0
    assert list(summary["s3dis"]["rooms"]) == ["Area_2"] and summary["s3dis"]["points"] > 0
    assert json.loads((out / "seg_standins.json").read_text())["settings"]["part"]["val_per_category"] == 0
    assert len(read_shapenetpart_txt(out / SHAPENETPART_LAYOUT, "test")) == 2
    assert len(read_shapenetpart_txt(out / SHAPENETPART_LAYOUT, "val")) == 0
    before = _files(out)
    (out / S3DIS_LAYOUT / "Area_2" / "marker").write_text("from the first build")
    build_seg_standins(out, SETTINGS)  # over an existing build: replaced, same bytes (but the timings)
    after = _files(out)
    assert before.pop("seg_standins.json") != b"" and after.pop("seg_standins.json") != b""
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg"]  # no temporary folders left


def test_build_refuses_a_shared_folder(tmp_path):
    (tmp_path / "seg").mkdir()
    (tmp_path / "seg" / "modelnet40_ply_hdf5_2048").mkdir()
    with pytest.raises(FileExistsError, match="folder of its own"):
        build_seg_standins(tmp_path / "seg", SETTINGS)
    assert (tmp_path / "seg" / "modelnet40_ply_hdf5_2048").is_dir()


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("seed"), r"settings: missing key\(s\) \['seed'\]"),
    (lambda s: s["part"].update(n_pionts=3), r"settings.part: unknown key\(s\) \['n_pionts'\]"),
    (lambda s: s["part"].update(n_points="many"), r"settings.part.n_points: n_points must be an integer"),
    (lambda s: s["part"].update(categories=["sofa"]), r"settings.part.categories"),
    (lambda s: s["rooms"].update(areas=[1, 1]), r"settings.rooms: areas must be distinct"),
    (lambda s: s.update(rooms=[]), r"settings.rooms must be a mapping"),
])
def test_settings_errors_name_the_key(tmp_path, change, message):
    settings = json.loads(json.dumps(SETTINGS))
    change(settings)
    with pytest.raises(ValueError, match=message):
        build_seg_standins(tmp_path / "seg", settings)
    assert not (tmp_path / "seg").exists()
