"""S3DIS: converting raw annotated rooms written here in the genuine layout, and reading rooms."""

from __future__ import annotations

import numpy as np
import pytest

from picat.datasets import DatasetError
from picat.datasets.s3dis import S3DIS_CLASSES, convert_room, converted_rooms, raw_rooms, read_room, write_room


def write_raw_room(root, area: int, room: str, files: dict[str, int], bad_line: bool = False):
    annotations = root / f"Area_{area}" / room / "Annotations"
    annotations.mkdir(parents=True)
    rng = np.random.default_rng(area)
    for name, count in files.items():
        rows = [f"{x:.3f} {y:.3f} {z:.3f} {int(r)} {int(g)} {int(b)}"
                for x, y, z, r, g, b in np.c_[rng.uniform(0, 5, (count, 3)), rng.integers(0, 256, (count, 3))]]
        if bad_line and name == "ceiling_1":
            rows[1] = "1.0 2.0 3.\x10 4 5 6"
        (annotations / f"{name}.txt").write_text("\n".join(rows) + "\n")
    return annotations.parent


def test_conversion_labels_points_by_file_and_counts_stairs_as_clutter(tmp_path):
    room = write_raw_room(tmp_path, 5, "office_1", {"ceiling_1": 3, "chair_2": 4, "stairs_1": 2})
    array, remapped = convert_room(room)
    assert array.shape == (9, 7) and array.dtype == np.float32 and remapped == 1
    labels = array[:, 6].astype(int).tolist()
    index = S3DIS_CLASSES.index
    assert labels == [index("ceiling")] * 3 + [index("chair")] * 4 + [index("clutter")] * 2
    np.testing.assert_allclose(array[:3, :3], np.loadtxt(room / "Annotations/ceiling_1.txt")[:, :3], rtol=1e-6)
    assert raw_rooms(tmp_path) == [room]


def test_bad_annotation_line_names_the_file_and_line(tmp_path):
    room = write_raw_room(tmp_path, 5, "hallway_6", {"ceiling_1": 3}, bad_line=True)
    with pytest.raises(DatasetError, match=r"hallway_6/Annotations/ceiling_1.txt: line 2: expected 'x y z r g b'"):
        convert_room(room)


def test_converted_rooms_round_trip_and_select_areas(tmp_path):
    for area, room in ((1, "office_1"), (5, "office_2")):
        array, _ = convert_room(write_raw_room(tmp_path / "raw", area, room, {"floor_1": 5, "wall_1": 3}))
        write_room(array, tmp_path / "npy" / f"Area_{area}_{room}.npy")
    assert [p.name for p in converted_rooms(tmp_path / "npy", areas=[5])] == ["Area_5_office_2.npy"]
    room = read_room(tmp_path / "npy" / "Area_5_office_2.npy")
    assert room.area == 5 and room.points.shape == (8, 3) and set(room.labels) == {1, 2}


def test_converted_room_errors(tmp_path):
    bad = np.zeros((3, 7), np.float32)
    bad[1, 6] = 13
    write_room(bad, tmp_path / "Area_1_room_1.npy")
    with pytest.raises(DatasetError, match=r"Area_1_room_1.npy: point 1 has label 13.0"):
        read_room(tmp_path / "Area_1_room_1.npy")
    (tmp_path / "Area_2_room_1.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(DatasetError, match="Area_2_room_1.npy: not a readable .npy file"):
        read_room(tmp_path / "Area_2_room_1.npy")
    with pytest.raises(DatasetError, match="no Area_<k>_<room>.npy rooms of areas"):
        converted_rooms(tmp_path, areas=[6])
