"""The S3DIS stand-in: furnished rooms sampled, coloured and written in S3DIS's raw (aligned) layout.

The demo suite evaluates scene segmentation (Table 5) without downloading S3DIS.
``write_s3dis_standin`` takes its place (``Stanford3dDataset_v1.2_Aligned_Version``), read
unchanged by the real readers (``picat.datasets.s3dis.raw_rooms`` / ``convert_room``):
furnished rooms (office, conferenceRoom, lounge, hallway; see ``picat.demo.furnishing``)
with floor, ceiling and walls. Points are area-uniform surface samples at a given density
(points inside other solids may stay, except the shell's points hidden behind wall-mounted
boxes, columns and beams, which are dropped), with colours from a per-room, per-class base
colour plus per-object and per-point noise: informative, but walls, ceiling, beams and
columns share hues, as do doors, tables and bookcases.

Determinism: every random draw comes from a generator seeded by (seed, dataset, area and
room, purpose; see ``picat.demo.seeding``), so the same arguments write byte-identical
files, and room i of an area does not depend on how many others are asked for.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import trimesh

from picat.datasets.s3dis import S3DIS_CLASSES
from picat.demo.folders import building, write_ascii
from picat.demo.furnishing import Placed, Room, RoomBox, add_structure, furnish
from picat.demo.seeding import (
    AREA_TAG,
    PURPOSE_COLOUR,
    PURPOSE_LAYOUT,
    PURPOSE_SAMPLE,
    PURPOSE_SHELL,
    ROOM_TAG,
    check_int,
    stream,
)

S3DIS_LAYOUT = "Stanford3dDataset_v1.2_Aligned_Version"
S3DIS_AREAS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
ROOM_TYPES: tuple[str, ...] = ("office", "conferenceRoom", "lounge", "hallway")
_ROOM_TYPE_WEIGHTS = (0.4, 0.25, 0.15, 0.2)
# (x range, y range) in metres; the height is drawn from _ROOM_HEIGHT. A hallway is long
# and narrow, as S3DIS's are.
_ROOM_SIZES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "office": ((3.0, 5.5), (3.0, 5.0)),
    "conferenceRoom": ((4.5, 6.0), (3.5, 5.0)),
    "lounge": ((3.5, 6.0), (3.0, 5.0)),
    "hallway": ((5.0, 7.0), (1.8, 2.6)),
}
_ROOM_HEIGHT = (2.6, 3.2)
# Rooms of an area share its coordinate frame (as S3DIS's aligned areas do): room i lies
# _ROOM_PITCH metres along x from room i - 1, after a per-area offset.
_ROOM_PITCH = 10.0
_AREA_OFFSET = 30.0
_MIN_INSTANCE_POINTS = 10  # a tiny object (a mug at a low density) still gets a few points

# RGB base colours. Deliberately overlapping families: the shell (ceiling, wall, beam,
# column) is pale, wood (door, table, bookcase) brown, so a network must use geometry too.
_CLASS_COLOURS: dict[str, tuple[float, float, float]] = {
    "ceiling": (196, 196, 190), "floor": (128, 118, 104), "wall": (186, 180, 168), "beam": (192, 188, 178),
    "column": (178, 174, 164), "window": (150, 168, 184), "door": (142, 112, 82), "table": (134, 104, 78),
    "chair": (74, 74, 84), "sofa": (112, 66, 56), "bookcase": (150, 122, 92), "board": (222, 224, 222),
    "clutter": (128, 128, 128),
}
_ROOM_CLASS_SHIFT = 18.0  # std of a room's per-class colour shift (per channel)
_INSTANCE_SHIFT = 10.0  # std of an object's own shift
_POINT_NOISE = 8.0  # std of per-point noise
_CLUTTER_SPREAD = 60.0  # clutter objects get very different colours


def _sample_rectangle(
    corner: np.ndarray, u: np.ndarray, v: np.ndarray, density: float, rng: np.random.Generator
) -> np.ndarray:
    """(M, 3) uniform samples of ``corner + [0, 1] u + [0, 1] v``, M = area x density."""
    area = float(np.linalg.norm(np.cross(u, v)))
    count = int(round(area * density))
    st = rng.random((count, 2))
    return corner + st[:, :1] * u + st[:, 1:] * v


@dataclass(frozen=True)
class RoomInstance:
    """One annotated object of a room: ``cls`` (an S3DIS class), (M, 3) float64 points in
    the area's frame (metres, Z up) and (M, 3) uint8 colours."""

    cls: str
    points: np.ndarray
    colors: np.ndarray


@dataclass(frozen=True)
class StandinRoom:
    """A generated room: its folder name (``office_2``) and its annotated objects."""

    name: str
    area: int
    instances: tuple[RoomInstance, ...]


def _sample_shell(room: Room, density: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Floor, ceiling and wall samples, less those hidden inside mounted boxes, columns, beams."""
    w, d, h = room.width, room.depth, room.height
    x, y, z = np.eye(3)
    shell = {
        "floor": _sample_rectangle(np.zeros(3), w * x, d * y, density, rng),
        "ceiling": _sample_rectangle(h * z, w * x, d * y, density, rng),
        "wall": np.concatenate([
            _sample_rectangle(np.zeros(3), w * x, h * z, density, rng),
            _sample_rectangle(np.array([w, 0, 0]), d * y, h * z, density, rng),
            _sample_rectangle(np.array([0, d, 0]), w * x, h * z, density, rng),
            _sample_rectangle(np.zeros(3), d * y, h * z, density, rng),
        ]),
    }
    for cls, points in shell.items():
        hidden = np.zeros(len(points), dtype=bool)
        for box in room.boxes:  # a scanner sees the door, not the wall behind it
            hidden |= np.all((points > box.lo - 0.01) & (points < box.hi + 0.01), axis=1)
        shell[cls] = points[~hidden]
    return shell


def _sample_box(room: Room, box: RoomBox, density: float, rng: np.random.Generator) -> np.ndarray:
    """(M, 3) samples of the box's faces, except those lying on the room's shell (hidden)."""
    bounds = (np.zeros(3), np.array([room.width, room.depth, room.height]))
    parts = []
    size = box.hi - box.lo
    for axis in range(3):
        u, v = np.eye(3)[(axis + 1) % 3] * size[(axis + 1) % 3], np.eye(3)[(axis + 2) % 3] * size[(axis + 2) % 3]
        for side in (box.lo, box.hi):
            if any(abs(side[axis] - bound[axis]) < 1e-6 for bound in bounds):
                continue
            corner = box.lo.copy()
            corner[axis] = side[axis]
            parts.append(_sample_rectangle(corner, u, v, density, rng))
    points = np.concatenate(parts) if parts else np.zeros((0, 3))
    if len(points) < _MIN_INSTANCE_POINTS:
        points = box.lo + rng.random((_MIN_INSTANCE_POINTS, 3)) * size
    return points


def _sample_mesh(placed: Placed, density: float, rng: np.random.Generator) -> np.ndarray:
    mesh = trimesh.Trimesh(placed.vertices, placed.faces, process=False)
    count = max(int(round(mesh.area * density)), _MIN_INSTANCE_POINTS)
    return trimesh.sample.sample_surface(mesh, count, seed=int(rng.integers(2**63)))[0]


def _colours(classes: Sequence[str], sizes: Sequence[int], rng: np.random.Generator) -> list[np.ndarray]:
    """Per instance (M, 3) uint8 colours: the room's class colour, the object's shift, noise."""
    light = rng.uniform(0.85, 1.1)
    room_shift = {cls: rng.normal(0.0, _ROOM_CLASS_SHIFT, 3) for cls in S3DIS_CLASSES}
    result = []
    for cls, size in zip(classes, sizes, strict=True):
        base = np.asarray(_CLASS_COLOURS[cls]) + room_shift[cls]
        spread = _CLUTTER_SPREAD if cls == "clutter" else _INSTANCE_SHIFT
        colour = (base + rng.normal(0.0, spread, 3)) * light + rng.normal(0.0, _POINT_NOISE, (size, 3))
        result.append(np.clip(np.round(colour), 0, 255).astype(np.uint8))
    return result


def generate_room(area: int, index: int, points_per_m2: float, seed: int) -> StandinRoom:
    """Room ``index`` (0-based) of ``area``: furnished, sampled, coloured, in the area's frame.

    The room's name (``<type>_<i>``, i counting rooms of that type in the area from 1)
    depends on the types of rooms 0..index-1 of the area, so it is drawn for those too
    (cheap: only the type).
    """
    check_int("area", area, 1)
    check_int("index", index, 0)
    check_int("seed", seed, 0)
    if not (isinstance(points_per_m2, (int, float)) and math.isfinite(points_per_m2) and points_per_m2 > 0):
        raise ValueError(f"points_per_m2 must be a positive number, got {points_per_m2!r}")
    kinds = [
        ROOM_TYPES[int(stream(seed, (ROOM_TAG, area, i, PURPOSE_LAYOUT)).choice(len(ROOM_TYPES), p=_ROOM_TYPE_WEIGHTS))]
        for i in range(index + 1)
    ]
    kind = kinds[-1]
    key = (ROOM_TAG, area, index)
    rng = stream(seed, key + (PURPOSE_LAYOUT,))
    rng.choice(len(ROOM_TYPES), p=_ROOM_TYPE_WEIGHTS)  # the type, drawn above
    (x_range, y_range) = _ROOM_SIZES[kind]
    room = Room(kind, float(rng.uniform(*x_range)), float(rng.uniform(*y_range)), float(rng.uniform(*_ROOM_HEIGHT)),
                 seed, key, rng)
    add_structure(room)
    furnish(room)

    sampler = stream(seed, key + (PURPOSE_SAMPLE,))
    classes, clouds = [], []
    for cls, points in _sample_shell(room, points_per_m2, stream(seed, key + (PURPOSE_SHELL,))).items():
        classes.append(cls)
        clouds.append(points)
    for box in room.boxes:
        classes.append(box.cls)
        clouds.append(_sample_box(room, box, points_per_m2, sampler))
    for placed in room.meshes:
        classes.append(placed.cls)
        clouds.append(_sample_mesh(placed, points_per_m2, sampler))
    colours = _colours(classes, [len(c) for c in clouds], stream(seed, key + (PURPOSE_COLOUR,)))
    area_rng = stream(seed, (AREA_TAG, area))
    offset = np.r_[area_rng.uniform(-_AREA_OFFSET, _AREA_OFFSET, 2), 0.0] + np.array([index * _ROOM_PITCH, 0.0, 0.0])
    instances = tuple(
        RoomInstance(cls, points + offset, colour) for cls, points, colour in zip(classes, clouds, colours, strict=True)
    )
    name = f"{kind}_{kinds.count(kind)}"
    return StandinRoom(name, int(area), instances)


def _xyzrgb_lines(points: np.ndarray, colors: np.ndarray) -> str:
    """'x y z r g b' lines as S3DIS writes them: millimetre coordinates, integer colours."""
    buffer = io.StringIO()
    np.savetxt(buffer, np.c_[points, colors.astype(np.float64)], fmt="%.3f %.3f %.3f %d %d %d")
    return buffer.getvalue()


def write_s3dis_into(
    layout: Path, areas: Sequence[int], rooms_per_area: int, points_per_m2: float, seed: int, log: TextIO | None,
) -> dict[str, Any]:
    """Write the rooms into the folder ``layout``; a summary (rooms, points per class)."""
    summary: dict[str, Any] = {"rooms": {}, "points": 0, "class_points": {cls: 0 for cls in S3DIS_CLASSES}}
    for area in areas:
        names = []
        for index in range(rooms_per_area):
            started = time.time()
            room = generate_room(area, index, points_per_m2, seed)
            room_dir = layout / f"Area_{area}" / room.name
            counters: dict[str, int] = {}
            texts = []
            for instance in room.instances:
                counters[instance.cls] = counters.get(instance.cls, 0) + 1
                text = _xyzrgb_lines(instance.points, instance.colors)
                write_ascii(room_dir / "Annotations" / f"{instance.cls}_{counters[instance.cls]}.txt", text)
                texts.append(text)
                summary["class_points"][instance.cls] += len(instance.points)
            # The room's own file holds all its points (the genuine one too).
            write_ascii(room_dir / f"{room.name}.txt", "".join(texts))
            n_points = sum(len(instance.points) for instance in room.instances)
            summary["points"] += n_points
            names.append(room.name)
            if log is not None:
                print(f"[seg-standins] s3dis Area_{area}/{room.name}: {len(room.instances)} objects, {n_points} points "
                      f"({time.time() - started:.1f} s)", file=log, flush=True)
        summary["rooms"][f"Area_{area}"] = names
    return summary


def check_room_arguments(areas: Sequence[int], rooms_per_area: int, points_per_m2: float, seed: int) -> tuple[int, ...]:
    if isinstance(areas, (str, bytes)) or not isinstance(areas, Sequence) or not areas:
        raise ValueError(f"areas must be a non-empty list of S3DIS area numbers {list(S3DIS_AREAS)}, got {areas!r}")
    bad = [a for a in areas if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a not in S3DIS_AREAS]
    if bad or len(set(areas)) != len(areas):
        raise ValueError(f"areas must be distinct S3DIS area numbers {list(S3DIS_AREAS)}, got {list(areas)}")
    check_int("rooms_per_area", rooms_per_area, 1)
    if isinstance(points_per_m2, bool) or not isinstance(points_per_m2, (int, float)) or not points_per_m2 > 0 \
            or not math.isfinite(points_per_m2):
        raise ValueError(f"points_per_m2 must be a positive number, got {points_per_m2!r}")
    check_int("seed", seed, 0)
    return tuple(int(a) for a in areas)


def write_s3dis_standin(root: Path, areas: Sequence[int], rooms_per_area: int, points_per_m2: float, seed: int) -> Path:
    """Write furnished rooms under ``root`` in S3DIS's raw (aligned) layout.

    Layout (``root/Stanford3dDataset_v1.2_Aligned_Version``)::

        Area_<k>/<type>_<i>/Annotations/<class>_<j>.txt   "x y z r g b" per point (j counts per class from 1)
        Area_<k>/<type>_<i>/<type>_<i>.txt                every point of the room

    Coordinates in metres with 3 decimals, Z up, each area's rooms in one shared frame;
    colours integers in 0..255.

    Args:
        root: parent folder; the layout folder must not exist yet (written atomically).
        areas: distinct area numbers among 1..6 (the demo holds Area 5 out, as S3DIS's protocol).
        rooms_per_area: rooms per area (>= 1).
        points_per_m2: surface sampling density (300 gives ~30-50 thousand points a room).
        seed: dataset seed (>= 0).

    Returns:
        The layout folder, what ``raw_rooms`` takes as its root.
    """
    areas = check_room_arguments(areas, rooms_per_area, points_per_m2, seed)
    target = Path(root) / S3DIS_LAYOUT
    with building(target) as tmp:
        write_s3dis_into(tmp, areas, int(rooms_per_area), float(points_per_m2), int(seed), None)
    return target
