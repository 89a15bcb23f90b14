"""Held-out demo stand-ins for the segmentation benchmarks, written in the genuine layouts.

The demo suite evaluates part and scene segmentation (Tables 4 and 5) without downloading
ShapeNetPart or S3DIS. These stand-ins are built from the synthetic generator
(``picat.synthetic``) and written exactly as the real datasets are laid out on disk, so the
real readers (``picat.datasets.shapenetpart.read_shapenetpart_txt``,
``picat.datasets.s3dis.raw_rooms`` / ``convert_room``) read them unchanged.

* ``write_shapenetpart_standin`` takes ShapeNetPart's place (the normal-resampled text
  layout, ``shapenetcore_partanno_segmentation_benchmark_v0_normal``). The synthetic
  categories that ShapeNetPart also has (airplane, car, chair, guitar, lamp, mug, table) are
  sampled area-uniformly on their surface with the sampled faces' normals and their part
  labels mapped onto ShapeNetPart's global part labels (``PART_LABELS``), then centred
  (bounding box) and scaled into the unit sphere, Y up as ShapeNet. Only the categories used
  are listed in ``synsetoffset2category.txt`` (with their real synset ids, in the genuine
  order); a ShapeNetPart part the synthetic shape lacks (a car's hood, a lamp's bulb, a
  table's drawer or support) never occurs.
* ``write_s3dis_standin`` takes S3DIS's place (``Stanford3dDataset_v1.2_Aligned_Version``):
  furnished rooms (office, conferenceRoom, lounge, hallway) with floor, ceiling and walls,
  doors, windows and boards as thin boxes on the walls, sometimes a column or a beam, and
  furniture from the synthetic generator (table, chair, sofa; shelf as bookcase; lamps,
  monitors, mugs, bottles and boxes as clutter), turned from Y up to Z up and placed on the
  floor (or on tables) without overlapping footprints, chairs at tables. Points are
  area-uniform surface samples at a given density (points inside other solids may stay,
  except the shell's points hidden behind wall-mounted boxes, columns and beams, which are
  dropped), with colours from a per-room, per-class base colour plus per-object and
  per-point noise: informative, but walls, ceiling, beams and columns share hues, as do
  doors, tables and bookcases.
* ``build_seg_standins`` writes both into one folder atomically, from a settings block
  (see ``check_settings``).

Held out by construction (as ``picat.standins``): every shape gets a seed in
[2**32, 2**33), never a pre-training corpus seed (uint32). Part-segmentation shapes encode
their split (train 0, test 1, val 2, as ``picat.standins.SPLITS``) in bits 30-31, so splits
never share a shape; room furniture uses the free value 3 there, so no furniture item is
ever a part-segmentation or classification stand-in shape. The 30 low bits come from
``SeedSequence(seed, spawn_key=(dataset tag, ...))``; the dataset tag keeps these shapes
apart from ``picat.standins``' (which has none) except by 30-bit chance.

Determinism: every random draw comes from a generator seeded by (seed, dataset, split or
area and room, category, object index, purpose), so the same arguments write
byte-identical files, and object i of a category (room i of an area) does not depend on
how many others are asked for.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import trimesh

from picat.datasets.s3dis import S3DIS_CLASSES
from picat.meshes import normalisation_transform
from picat.standins import SPLITS as _STANDIN_SPLITS
from picat.standins import _held_out_seed
from picat.synthetic import CATEGORIES, PartMesh, generate_shape

SHAPENETPART_LAYOUT = "shapenetcore_partanno_segmentation_benchmark_v0_normal"
S3DIS_LAYOUT = "Stanford3dDataset_v1.2_Aligned_Version"
SUMMARY_FILE = "seg_standins.json"

# ---------------------------------------------------------------------------------------
# ShapeNetPart: synthetic category -> (ShapeNetPart category, synset id), and the part table.

PART_CATEGORIES: dict[str, tuple[str, str]] = {
    "airplane": ("Airplane", "02691156"),
    "car": ("Car", "02958343"),
    "chair": ("Chair", "03001627"),
    "guitar": ("Guitar", "03467517"),
    "lamp": ("Lamp", "03636649"),
    "mug": ("Mug", "03797390"),
    "table": ("Table", "04379243"),
}
# Synthetic part name -> ShapeNetPart global part label. ShapeNetPart's parts per category
# (in label order): Airplane body, wing, tail, engine (0-3); Car roof, hood, wheel, body
# (8-11); Chair back, seat, leg, arm (12-15); Guitar head, neck, body (19-21); Lamp base,
# lampshade, bulb, tube (24-27); Mug handle, cup (36-37); Table desktop, leg, support
# (47-49). The synthetic car's cabin is its roof; the lamp's stem its tube.
PART_LABELS: dict[str, dict[str, int]] = {
    "airplane": {"fuselage": 0, "wing": 1, "tail": 2, "engine": 3},
    "car": {"cabin": 8, "wheel": 10, "body": 11},
    "chair": {"back": 12, "seat": 13, "leg": 14, "arm": 15},
    "guitar": {"head": 19, "neck": 20, "body": 21},
    "lamp": {"base": 24, "shade": 25, "stem": 27},
    "mug": {"handle": 36, "body": 37},
    "table": {"top": 47, "leg": 48},
}
PART_SPLITS: tuple[str, ...] = ("train", "val", "test")

# ---------------------------------------------------------------------------------------
# S3DIS rooms.

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
_WALL_GAP = 0.02  # furniture stands this far from the wall
_DOOR_CLEARANCE = 0.9  # floor kept free in front of a door
_FURNITURE_TRIES = 30

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

# Seeds: dataset tags in the spawn keys, and the split value that room furniture uses in
# bits 30-31 of its held-out seed (0-2 are picat.standins' splits).
_PART_TAG, _ROOM_TAG, _AREA_TAG = 101, 102, 103
_ROOM_SEED_SPLIT = 3
_SHAPE, _SAMPLE, _LIST, _LAYOUT, _COLOUR, _SHELL = 0, 1, 2, 3, 4, 5


def _stream(seed: int, key: tuple[int, ...]) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _held_out(seed: int, key: tuple[int, ...], split_value: int) -> int:
    word = np.random.SeedSequence(seed, spawn_key=key).generate_state(1, dtype=np.uint32)[0]
    return _held_out_seed(split_value, int(word))


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


@contextmanager
def _building(target: Path) -> Iterator[Path]:
    """A temporary folder next to ``target`` that becomes ``target`` if the block succeeds.

    ``target`` must not exist: the writers never merge into (or delete) existing data.
    """
    target = Path(target)
    if target.exists():
        raise FileExistsError(f"{target} already exists; remove it first (the stand-in writers never overwrite)")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.tmp-"))
    try:
        yield tmp
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ---------------------------------------------------------------------------------------
# ShapeNetPart stand-in


@dataclass(frozen=True)
class PartShape:
    """One part-labelled stand-in shape.

    Attributes:
        table: (N, 7) float64 rows x y z nx ny nz part (global ShapeNetPart label).
        synset: the category's synset id.
        shape_id: 32 hexadecimal digits, as ShapeNet's ids.
        shape_seed: its ``generate_shape`` seed, in [2**32, 2**33).
    """

    table: np.ndarray
    synset: str
    shape_id: str
    shape_seed: int


def part_shape(category: str, index: int, split: str, n_points: int, seed: int) -> PartShape:
    """Shape ``index`` of ``category`` in ``split``: surface samples, normals, mapped parts.

    Args:
        category: a key of ``PART_CATEGORIES``.
        index: object index within the category and split (>= 0).
        split: "train", "val" or "test".
        n_points: points N sampled on the surface.
        seed: dataset seed.
    """
    if category not in PART_CATEGORIES:
        raise ValueError(f"unknown part category {category!r}; valid: {', '.join(PART_CATEGORIES)}")
    if split not in PART_SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(PART_SPLITS)}")
    _check_int("index", index, 0)
    _check_int("n_points", n_points, 1)
    _check_int("seed", seed, 0)
    split_value = _STANDIN_SPLITS.index(split)
    key = (_PART_TAG, split_value, CATEGORIES.index(category), index)
    shape_seed = _held_out(seed, key + (_SHAPE,), split_value)
    mesh = generate_shape(category, shape_seed)
    lookup = np.array([PART_LABELS[category][name] for name in mesh.part_names], dtype=np.int64)
    rng = _stream(seed, key + (_SAMPLE,))
    surface = mesh.to_trimesh()
    # sample_surface draws each point's face independently, so the rows are already in
    # random order (no part or face comes first).
    points, faces = trimesh.sample.sample_surface(surface, n_points, seed=int(rng.integers(2**63)))
    transform = normalisation_transform(points)
    points = points @ transform[:3, :3].T + transform[:3, 3]
    normals = surface.face_normals[faces]  # a translation and a uniform scale keep them
    table = np.c_[points, normals, lookup[mesh.face_labels[faces]]]
    synset = PART_CATEGORIES[category][1]
    shape_id = hashlib.sha256(f"picat-seg-standin {synset} {shape_seed}".encode()).hexdigest()[:32]
    return PartShape(table, synset, shape_id, shape_seed)


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="ascii")


def _shapenetpart_into(
    layout: Path, per_split: Mapping[str, int], n_points: int, seed: int, categories: Sequence[str], log: TextIO | None,
) -> dict[str, int]:
    """Write the layout's files into the folder ``layout``; shapes per split."""
    ordered = sorted(categories, key=lambda c: PART_CATEGORIES[c][0])  # the genuine file is alphabetical
    _write_text(layout / "synsetoffset2category.txt",
                "".join(f"{PART_CATEGORIES[c][0]}\t{PART_CATEGORIES[c][1]}\n" for c in ordered))
    counts = {}
    for split in PART_SPLITS:
        started = time.time()
        entries = []
        for category in ordered:
            for index in range(per_split[split]):
                shape = part_shape(category, index, split, n_points, seed)
                buffer = io.StringIO()
                # The genuine files write every column, the part label too, with 6 decimals.
                np.savetxt(buffer, shape.table, fmt="%.6f")
                _write_text(layout / shape.synset / f"{shape.shape_id}.txt", buffer.getvalue())
                entries.append(f"shape_data/{shape.synset}/{shape.shape_id}")
        order = _stream(seed, (_PART_TAG, _STANDIN_SPLITS.index(split), _LIST)).permutation(len(entries))
        _write_text(layout / "train_test_split" / f"shuffled_{split}_file_list.json",
                    json.dumps([entries[i] for i in order]))
        counts[split] = len(entries)
        if log is not None:
            print(f"[seg-standins] shapenetpart {split}: {len(entries)} shapes ({time.time() - started:.1f} s)",
                  file=log, flush=True)
    return counts


def _check_part_arguments(
    train_per_category: int, test_per_category: int, val_per_category: int, n_points: int, seed: int,
    categories: Sequence[str],
) -> tuple[dict[str, int], tuple[str, ...]]:
    per_split = {"train": _check_int("train_per_category", train_per_category, 1),
                 "val": _check_int("val_per_category", val_per_category, 0),
                 "test": _check_int("test_per_category", test_per_category, 1)}
    _check_int("n_points", n_points, 1)
    _check_int("seed", seed, 0)
    return per_split, _check_categories(categories)


def _check_categories(categories: Sequence[str]) -> tuple[str, ...]:
    if isinstance(categories, str):
        raise ValueError(f"categories must be a list of names, got the string {categories!r}")
    categories = tuple(categories)
    unknown = [c for c in categories if c not in PART_CATEGORIES]
    if unknown or not categories or len(set(categories)) != len(categories):
        raise ValueError(f"categories must be distinct names among {', '.join(PART_CATEGORIES)}, got {list(categories)}")
    return categories


def write_shapenetpart_standin(
    root: Path, train_per_category: int, test_per_category: int, n_points: int, seed: int,
    val_per_category: int = 0, categories: Sequence[str] = tuple(PART_CATEGORIES),
) -> Path:
    """Write the ShapeNetPart stand-in under ``root`` in the genuine text layout.

    Layout (``root/shapenetcore_partanno_segmentation_benchmark_v0_normal``)::

        synsetoffset2category.txt       "Airplane\\t02691156" per category used
        <synset>/<shape id>.txt         n_points lines "x y z nx ny nz part" (global part label)
        train_test_split/shuffled_{train,val,test}_file_list.json   ["shape_data/<synset>/<id>", ...]

    Args:
        root: parent folder; the layout folder must not exist yet (written atomically).
        train_per_category, test_per_category: shapes per category in those splits (>= 1).
        n_points: points per shape (the genuine files hold ~2-3 thousand, varying).
        seed: dataset seed (>= 0).
        val_per_category: shapes per category in val (>= 0; 0 writes an empty list, which
            the reader accepts).
        categories: synthetic categories, keys of ``PART_CATEGORIES``.

    Returns:
        The layout folder, what ``read_shapenetpart_txt`` takes as its root.
    """
    per_split, categories = _check_part_arguments(train_per_category, test_per_category, val_per_category,
                                                  n_points, seed, categories)
    target = Path(root) / SHAPENETPART_LAYOUT
    with _building(target) as tmp:
        _shapenetpart_into(tmp, per_split, int(n_points), int(seed), categories, None)
    return target


# ---------------------------------------------------------------------------------------
# S3DIS stand-in: geometry helpers


def _rotation_z(angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# Y up (synthetic, front +Z) -> Z up (S3DIS): (x, y, z) -> (x, -z, y), a proper rotation;
# the front then faces -Y.
_Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def _facing_yaw(direction: np.ndarray) -> float:
    """Yaw about Z that turns a Z-up object's front (-Y) towards the (2,) ``direction``."""
    return math.atan2(float(direction[0]), -float(direction[1]))


@dataclass
class _Placed:
    """A mesh in room coordinates: (V, 3) vertices, (F, 3) faces, its S3DIS class."""

    cls: str
    vertices: np.ndarray
    faces: np.ndarray
    face_labels: np.ndarray | None = None  # the synthetic part of each face, when it has parts
    yaw: float = 0.0  # its front faces (sin yaw, -cos yaw)
    footprint: int | None = None  # index in _Room.footprints, once placed on the floor

    @property
    def lo(self) -> np.ndarray:
        return self.vertices.min(axis=0)

    @property
    def hi(self) -> np.ndarray:
        return self.vertices.max(axis=0)


def _orient(mesh: PartMesh, cls: str, yaw: float, scale: np.ndarray) -> _Placed:
    """``mesh`` turned Z up, scaled by (3,) ``scale`` (object axes, Z up), turned by ``yaw``,
    standing on z = 0 with its footprint centred on the origin."""
    vertices = (mesh.vertices @ _Y_UP_TO_Z_UP.T) * scale
    vertices = vertices @ _rotation_z(yaw).T
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    vertices = vertices - np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return _Placed(cls, vertices, np.asarray(mesh.faces), np.asarray(mesh.face_labels), yaw)


def _orient_again(placed: _Placed, yaw: float) -> _Placed:
    """``placed`` (footprint centred on the origin) turned by ``yaw`` more about Z, re-centred."""
    vertices = placed.vertices @ _rotation_z(yaw).T
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    vertices = vertices - np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return _Placed(placed.cls, vertices, placed.faces, placed.face_labels, placed.yaw + yaw)


def _moved(placed: _Placed, offset: Sequence[float], footprint: int | None = None) -> _Placed:
    return _Placed(placed.cls, placed.vertices + np.asarray(offset, dtype=np.float64), placed.faces, placed.face_labels,
                   placed.yaw, footprint)


@dataclass(frozen=True)
class _Box:
    """An axis-aligned box [lo, hi] of class ``cls`` (a door, a column...)."""

    cls: str
    lo: np.ndarray
    hi: np.ndarray


def _overlap(lo_a: np.ndarray, hi_a: np.ndarray, lo_b: np.ndarray, hi_b: np.ndarray, margin: float = 0.0) -> bool:
    return bool(np.all(lo_a < hi_b + margin) and np.all(lo_b < hi_a + margin))


def _sample_rectangle(corner: np.ndarray, u: np.ndarray, v: np.ndarray, density: float, rng: np.random.Generator) -> np.ndarray:
    """(M, 3) uniform samples of ``corner + [0, 1] u + [0, 1] v``, M = area x density."""
    area = float(np.linalg.norm(np.cross(u, v)))
    count = int(round(area * density))
    st = rng.random((count, 2))
    return corner + st[:, :1] * u + st[:, 1:] * v


@dataclass
class _Wall:
    """One of the room's four walls: points are origin + s tangent + t normal (+ z up)."""

    origin: np.ndarray
    tangent: np.ndarray
    normal: np.ndarray  # into the room
    length: float

    def box(self, s0: float, s1: float, t1: float, z0: float, z1: float) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi) of the box spanning [s0, s1] along the wall, [0, t1] into the room, [z0, z1]."""
        corners = [self.origin + s * self.tangent + t * self.normal for s in (s0, s1) for t in (0.0, t1)]
        xy = np.array(corners)
        return np.r_[xy.min(axis=0), z0], np.r_[xy.max(axis=0), z1]


# ---------------------------------------------------------------------------------------
# S3DIS stand-in: one room


@dataclass
class _Room:
    """A room being furnished, in its own frame: x in [0, width], y in [0, depth], z up."""

    kind: str
    width: float
    depth: float
    height: float
    seed: int
    key: tuple[int, ...]
    rng: np.random.Generator
    boxes: list[_Box] = field(default_factory=list)
    meshes: list[_Placed] = field(default_factory=list)
    footprints: list[tuple[np.ndarray, np.ndarray]] = field(default_factory=list)
    wall_items: dict[int, list[tuple[float, float, float, float]]] = field(default_factory=dict)
    n_shapes: int = 0

    @property
    def walls(self) -> list[_Wall]:
        w, d = self.width, self.depth
        return [
            _Wall(np.array([0.0, 0.0]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), w),  # south, y = 0
            _Wall(np.array([w, 0.0]), np.array([0.0, 1.0]), np.array([-1.0, 0.0]), d),  # east, x = w
            _Wall(np.array([w, d]), np.array([-1.0, 0.0]), np.array([0.0, -1.0]), w),  # north, y = d
            _Wall(np.array([0.0, d]), np.array([0.0, -1.0]), np.array([1.0, 0.0]), d),  # west, x = 0
        ]

    def shape(self, category: str) -> PartMesh:
        """The room's next synthetic shape, with a held-out seed (see the module docstring)."""
        self.n_shapes += 1
        return generate_shape(category, _held_out(self.seed, self.key + (self.n_shapes, _SHAPE), _ROOM_SEED_SPLIT))

    def pick_wall(self) -> int:
        lengths = np.array([wall.length for wall in self.walls])
        return int(self.rng.choice(4, p=lengths / lengths.sum()))

    # -- wall-mounted boxes (doors, windows, boards) ------------------------------------

    def mount(self, cls: str, width: float, z0: float, z1: float, thickness: float) -> bool:
        """Put a thin box on a wall where it overlaps no other mounted box; False if none fits."""
        for _ in range(_FURNITURE_TRIES):
            index = self.pick_wall()
            side = self.walls[index]
            if side.length < width + 0.4:
                continue
            s0 = float(self.rng.uniform(0.2, side.length - width - 0.2))
            taken = self.wall_items.setdefault(index, [])
            if any(s0 < b1 + 0.2 and b0 < s0 + width + 0.2 and z0 < c1 and c0 < z1 for b0, b1, c0, c1 in taken):
                continue
            lo, hi = side.box(s0, s0 + width, thickness, z0, z1)
            if cls == "door":  # keep the way through free
                clear_lo, clear_hi = side.box(s0, s0 + width, _DOOR_CLEARANCE, 0.0, 0.0)
                self.footprints.append((clear_lo[:2], clear_hi[:2]))
            taken.append((s0, s0 + width, z0, z1))
            self.boxes.append(_Box(cls, lo, hi))
            return True
        return False

    # -- footprints ------------------------------------------------------------------

    def free(self, lo: np.ndarray, hi: np.ndarray, ignore: int | None = None) -> bool:
        """Whether the footprint [lo, hi] (2,) is inside the room and overlaps nothing placed."""
        if lo[0] < 0.0 or lo[1] < 0.0 or hi[0] > self.width or hi[1] > self.depth:
            return False
        return not any(_overlap(lo, hi, a, b) for i, (a, b) in enumerate(self.footprints) if i != ignore)

    def place(self, placed: _Placed, centre_xy: np.ndarray, z: float = 0.0, ignore: int | None = None) -> _Placed | None:
        """``placed`` moved to ``centre_xy`` (footprint centre) at height z, if its footprint is free."""
        moved = _moved(placed, (centre_xy[0], centre_xy[1], z), len(self.footprints))
        lo, hi = moved.lo[:2], moved.hi[:2]
        if not self.free(lo, hi, ignore):
            return None
        self.footprints.append((lo, hi))
        self.meshes.append(moved)
        return moved

    def against_wall(self, upright: _Placed) -> _Placed | None:
        """Place ``upright`` (yaw 0, footprint centred) with its back to a random wall, facing
        into the room; None if no free spot was found."""
        for _ in range(_FURNITURE_TRIES):
            side = self.walls[self.pick_wall()]
            placed = _orient_again(upright, _facing_yaw(side.normal))
            size = placed.hi - placed.lo
            along = abs(float(size[:2] @ side.tangent))
            across = abs(float(size[:2] @ side.normal))
            if side.length < along + 0.1:
                continue
            s = float(self.rng.uniform(along / 2 + 0.05, side.length - along / 2 - 0.05))
            centre = side.origin + s * side.tangent + (across / 2 + _WALL_GAP) * side.normal
            result = self.place(placed, centre)
            if result is not None:
                return result
        return None

    def anywhere(self, placed: _Placed, region: tuple[np.ndarray, np.ndarray] | None = None) -> _Placed | None:
        """Place an object at a random free spot (optionally with its centre in ``region``)."""
        size = placed.hi - placed.lo
        lo = size[:2] / 2 + 0.05
        hi = np.array([self.width, self.depth]) - size[:2] / 2 - 0.05
        if region is not None:
            lo, hi = np.maximum(lo, region[0]), np.minimum(hi, region[1])
        if np.any(hi < lo):
            return None
        for _ in range(_FURNITURE_TRIES):
            result = self.place(placed, self.rng.uniform(lo, hi))
            if result is not None:
                return result
        return None

    # -- furniture -------------------------------------------------------------------

    def oriented(self, category: str, cls: str, yaw: float, scale: float | np.ndarray, height: float | None = None) -> _Placed:
        """The room's next ``category`` shape, Z up, scaled by ``scale`` (object axes), and
        vertically to ``height`` metres when given (desks and meeting tables: the synthetic
        tables include coffee-table heights)."""
        mesh = self.shape(category)
        scale = np.array(np.broadcast_to(np.asarray(scale, dtype=np.float64), (3,)))
        if height is not None:
            scale[2] = height / float(np.ptp(mesh.vertices[:, 1]))
        return _orient(mesh, cls, yaw, scale)

    def chairs_at(self, table: _Placed, count: int) -> None:
        """Up to ``count`` chairs around ``table``, facing it, partly tucked under its edge."""
        lo, hi = table.lo[:2], table.hi[:2]
        centre = (lo + hi) / 2
        for _ in range(count):
            chair = self.oriented("chair", "chair", 0.0, self.rng.uniform(0.92, 1.08))
            depth = float((chair.hi - chair.lo)[1])
            for _ in range(6):
                # A side of the table: the axis across it and which way is outwards.
                axis, sign = ((1, -1.0), (1, 1.0), (0, -1.0), (0, 1.0))[int(self.rng.integers(4))]
                position = centre.copy()
                other = 1 - axis
                if hi[other] - lo[other] > 0.5:
                    position[other] = self.rng.uniform(lo[other] + 0.25, hi[other] - 0.25)
                edge = hi[axis] if sign > 0 else lo[axis]
                position[axis] = edge + sign * depth * 0.25
                facing = np.zeros(2)
                facing[axis] = -sign
                turned = _orient_again(chair, _facing_yaw(facing))
                if self.place(turned, position, ignore=table.footprint) is not None:
                    break

    def on_top(self, table: _Placed, categories: Sequence[str], count: int) -> None:
        """Up to ``count`` small clutter objects standing on the table's top."""
        labels = table.face_labels
        top = table.vertices[np.unique(table.faces[labels == 0])] if labels is not None else table.vertices
        lo, hi = top.min(axis=0), top.max(axis=0)
        taken: list[tuple[np.ndarray, np.ndarray]] = []
        for _ in range(count):
            category = str(self.rng.choice(categories))
            # Facing where the table faces (a desk's chair), give or take.
            item = self.oriented(category, "clutter", table.yaw + float(self.rng.uniform(-0.4, 0.4)), self.rng.uniform(0.9, 1.1))
            size = item.hi - item.lo
            if category == "lamp" and size[2] > 0.8:  # a floor lamp does not go on a table
                self.floor_clutter(item)
                continue
            room = hi[:2] - lo[:2] - size[:2]
            if np.any(room < 0):
                continue
            for _ in range(6):
                centre = lo[:2] + size[:2] / 2 + self.rng.random(2) * room
                a, b = centre - size[:2] / 2, centre + size[:2] / 2
                if not any(_overlap(a, b, c, d, 0.02) for c, d in taken):
                    taken.append((a, b))
                    self.meshes.append(_moved(item, (centre[0], centre[1], hi[2])))
                    break

    def floor_clutter(self, item: _Placed | None = None) -> None:
        """A lamp, a bin or a box on the floor, against a wall or anywhere."""
        if item is None:
            choice = self.rng.random()
            if choice < 0.4:
                item = self.oriented("lamp", "clutter", float(self.rng.uniform(0, 2 * math.pi)), 1.0)
            else:  # a box (carton, bin, cabinet): S3DIS's clutter is mostly such things
                size = self.rng.uniform([0.3, 0.3, 0.2], [0.8, 0.6, 0.9])
                box = trimesh.creation.box(extents=size)
                vertices = box.vertices - np.array([0.0, 0.0, -size[2] / 2])
                item = _Placed("clutter", vertices, np.asarray(box.faces))
        if self.rng.random() < 0.6:
            self.against_wall(item)
        else:
            self.anywhere(item)


def _structure(room: _Room) -> None:
    """Doors, windows, boards, and sometimes a column or a beam."""
    rng, kind, height = room.rng, room.kind, room.height
    n_doors = int(rng.integers(2, 5)) if kind == "hallway" else int(rng.integers(1, 3))
    for _ in range(n_doors):
        room.mount("door", rng.uniform(0.85, 1.0), 0.0, rng.uniform(2.0, min(2.2, height - 0.2)), rng.uniform(0.04, 0.08))
    n_windows = 0 if kind == "hallway" else int(rng.integers(0, 3))
    for _ in range(n_windows):
        sill = rng.uniform(0.8, 1.0)
        room.mount("window", rng.uniform(1.0, 2.0), sill, min(sill + rng.uniform(1.0, 1.5), height - 0.2), rng.uniform(0.03, 0.1))
    n_boards = 1 if kind == "conferenceRoom" else int(rng.random() < (0.5 if kind == "office" else 0.2))
    for _ in range(n_boards):
        bottom = rng.uniform(0.8, 1.0)
        room.mount("board", rng.uniform(1.2, 2.5), bottom, bottom + rng.uniform(1.0, 1.3), rng.uniform(0.02, 0.04))
    if rng.random() < 0.35:  # a column standing against a wall
        size = rng.uniform(0.3, 0.6, 2)
        for _ in range(_FURNITURE_TRIES):
            side = room.walls[room.pick_wall()]
            if side.length < size[0] + 0.2:
                continue
            s0 = float(rng.uniform(0.0, side.length - size[0]))
            lo, hi = side.box(s0, s0 + size[0], size[1], 0.0, height)
            if room.free(lo[:2], hi[:2]):
                room.footprints.append((lo[:2], hi[:2]))
                room.boxes.append(_Box("column", lo, hi))
                break
    if rng.random() < 0.3:  # a beam across the ceiling
        width, drop = rng.uniform(0.25, 0.5), rng.uniform(0.3, 0.5)
        if room.width >= room.depth:  # across the short side
            x = rng.uniform(0.5, room.width - 0.5 - width)
            room.boxes.append(_Box("beam", np.array([x, 0.0, height - drop]), np.array([x + width, room.depth, height])))
        else:
            y = rng.uniform(0.5, room.depth - 0.5 - width)
            room.boxes.append(_Box("beam", np.array([0.0, y, height - drop]), np.array([room.width, y + width, height])))


def _furnish(room: _Room) -> None:
    """Furniture for the room's kind (tables with chairs, sofas, bookcases, clutter)."""
    rng, kind = room.rng, room.kind
    small = ("monitor", "mug", "bottle", "lamp")

    def bookcases(count: int) -> None:
        for _ in range(count):
            scale = rng.uniform(0.9, 1.15)
            room.against_wall(room.oriented("shelf", "bookcase", 0.0, scale))

    if kind == "conferenceRoom":
        # One long table in the middle (the synthetic table stretched along its length).
        stretch = np.array([rng.uniform(1.6, 2.4), rng.uniform(1.1, 1.4), 1.0])
        yaw = 0.0 if room.width >= room.depth else math.pi / 2
        table = room.oriented("table", "table", yaw, stretch, height=rng.uniform(0.70, 0.78))
        centre = np.array([room.width, room.depth]) / 2
        table = room.anywhere(table, (centre - 0.4, centre + 0.4))
        if table is not None:
            room.chairs_at(table, int(rng.integers(4, 9)))
            room.on_top(table, ("mug", "bottle", "monitor"), int(rng.integers(1, 4)))
        bookcases(int(rng.integers(0, 2)))
    elif kind == "office":
        for _ in range(int(rng.integers(1, 4))):  # desks along the walls, each with its chair
            scale = rng.uniform(0.9, 1.1)
            desk = room.against_wall(room.oriented("table", "table", 0.0, scale, height=rng.uniform(0.70, 0.78)))
            if desk is not None:
                room.chairs_at(desk, 1)
                room.on_top(desk, small, int(rng.integers(1, 4)))
        bookcases(int(rng.integers(1, 3)))
        if rng.random() < 0.3:
            room.against_wall(room.oriented("sofa", "sofa", 0.0, rng.uniform(0.9, 1.05)))
    elif kind == "lounge":
        for _ in range(int(rng.integers(1, 3))):
            scale = rng.uniform(0.9, 1.05)
            room.against_wall(room.oriented("sofa", "sofa", 0.0, scale))
        table = room.anywhere(room.oriented("table", "table", float(rng.choice([0.0, math.pi / 2])), rng.uniform(0.8, 1.0)))
        if table is not None:
            room.chairs_at(table, int(rng.integers(1, 4)))
            room.on_top(table, ("mug", "bottle", "lamp"), int(rng.integers(0, 3)))
        bookcases(int(rng.integers(0, 2)))
    else:  # hallway: a few things along the walls
        bookcases(int(rng.integers(0, 3)))
        for _ in range(int(rng.integers(0, 3))):
            scale = rng.uniform(0.92, 1.08)
            room.against_wall(room.oriented("chair", "chair", 0.0, scale))
        if rng.random() < 0.3:
            room.against_wall(room.oriented("sofa", "sofa", 0.0, rng.uniform(0.9, 1.0)))
    for _ in range(int(rng.integers(1, 4))):
        room.floor_clutter()


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


def _sample_shell(room: _Room, density: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
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


def _sample_box(room: _Room, box: _Box, density: float, rng: np.random.Generator) -> np.ndarray:
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


def _sample_mesh(placed: _Placed, density: float, rng: np.random.Generator) -> np.ndarray:
    mesh = trimesh.Trimesh(placed.vertices, placed.faces, process=False)
    count = max(int(round(mesh.area * density)), _MIN_INSTANCE_POINTS)
    return trimesh.sample.sample_surface(mesh, count, seed=int(rng.integers(2**63)))[0]


def _colours(classes: Sequence[str], sizes: Sequence[int], rng: np.random.Generator) -> list[np.ndarray]:
    """Per instance (M, 3) uint8 colours: the room's class colour, the object's shift, noise."""
    light = rng.uniform(0.85, 1.1)
    room_shift = {cls: rng.normal(0.0, _ROOM_CLASS_SHIFT, 3) for cls in S3DIS_CLASSES}
    result = []
    for cls, size in zip(classes, sizes):
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
    _check_int("area", area, 1)
    _check_int("index", index, 0)
    _check_int("seed", seed, 0)
    if not (isinstance(points_per_m2, (int, float)) and math.isfinite(points_per_m2) and points_per_m2 > 0):
        raise ValueError(f"points_per_m2 must be a positive number, got {points_per_m2!r}")
    kinds = [ROOM_TYPES[int(_stream(seed, (_ROOM_TAG, area, i, _LAYOUT)).choice(len(ROOM_TYPES), p=_ROOM_TYPE_WEIGHTS))]
             for i in range(index + 1)]
    kind = kinds[-1]
    key = (_ROOM_TAG, area, index)
    rng = _stream(seed, key + (_LAYOUT,))
    rng.choice(len(ROOM_TYPES), p=_ROOM_TYPE_WEIGHTS)  # the type, drawn above
    (x_range, y_range) = _ROOM_SIZES[kind]
    room = _Room(kind, float(rng.uniform(*x_range)), float(rng.uniform(*y_range)), float(rng.uniform(*_ROOM_HEIGHT)),
                 seed, key, rng)
    _structure(room)
    _furnish(room)

    sampler = _stream(seed, key + (_SAMPLE,))
    classes, clouds = [], []
    for cls, points in _sample_shell(room, points_per_m2, _stream(seed, key + (_SHELL,))).items():
        classes.append(cls)
        clouds.append(points)
    for box in room.boxes:
        classes.append(box.cls)
        clouds.append(_sample_box(room, box, points_per_m2, sampler))
    for placed in room.meshes:
        classes.append(placed.cls)
        clouds.append(_sample_mesh(placed, points_per_m2, sampler))
    colours = _colours(classes, [len(c) for c in clouds], _stream(seed, key + (_COLOUR,)))
    area_rng = _stream(seed, (_AREA_TAG, area))
    offset = np.r_[area_rng.uniform(-_AREA_OFFSET, _AREA_OFFSET, 2), 0.0] + np.array([index * _ROOM_PITCH, 0.0, 0.0])
    instances = tuple(RoomInstance(cls, points + offset, colour) for cls, points, colour in zip(classes, clouds, colours))
    name = f"{kind}_{kinds.count(kind)}"
    return StandinRoom(name, int(area), instances)


def _xyzrgb_lines(points: np.ndarray, colors: np.ndarray) -> str:
    """'x y z r g b' lines as S3DIS writes them: millimetre coordinates, integer colours."""
    buffer = io.StringIO()
    np.savetxt(buffer, np.c_[points, colors.astype(np.float64)], fmt="%.3f %.3f %.3f %d %d %d")
    return buffer.getvalue()


def _s3dis_into(
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
                _write_text(room_dir / "Annotations" / f"{instance.cls}_{counters[instance.cls]}.txt", text)
                texts.append(text)
                summary["class_points"][instance.cls] += len(instance.points)
            # The room's own file holds all its points (the genuine one too).
            _write_text(room_dir / f"{room.name}.txt", "".join(texts))
            n_points = sum(len(instance.points) for instance in room.instances)
            summary["points"] += n_points
            names.append(room.name)
            if log is not None:
                print(f"[seg-standins] s3dis Area_{area}/{room.name}: {len(room.instances)} objects, {n_points} points "
                      f"({time.time() - started:.1f} s)", file=log, flush=True)
        summary["rooms"][f"Area_{area}"] = names
    return summary


def _check_room_arguments(areas: Sequence[int], rooms_per_area: int, points_per_m2: float, seed: int) -> tuple[int, ...]:
    if isinstance(areas, (str, bytes)) or not isinstance(areas, Sequence) or not areas:
        raise ValueError(f"areas must be a non-empty list of S3DIS area numbers {list(S3DIS_AREAS)}, got {areas!r}")
    bad = [a for a in areas if isinstance(a, bool) or not isinstance(a, (int, np.integer)) or a not in S3DIS_AREAS]
    if bad or len(set(areas)) != len(areas):
        raise ValueError(f"areas must be distinct S3DIS area numbers {list(S3DIS_AREAS)}, got {list(areas)}")
    _check_int("rooms_per_area", rooms_per_area, 1)
    if isinstance(points_per_m2, bool) or not isinstance(points_per_m2, (int, float)) or not points_per_m2 > 0 \
            or not math.isfinite(points_per_m2):
        raise ValueError(f"points_per_m2 must be a positive number, got {points_per_m2!r}")
    _check_int("seed", seed, 0)
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
    areas = _check_room_arguments(areas, rooms_per_area, points_per_m2, seed)
    target = Path(root) / S3DIS_LAYOUT
    with _building(target) as tmp:
        _s3dis_into(tmp, areas, int(rooms_per_area), float(points_per_m2), int(seed), None)
    return target


# ---------------------------------------------------------------------------------------
# The workflow's entry point

# settings block: key -> required; see check_settings.
_PART_KEYS = {"train_per_category": True, "test_per_category": True, "n_points": True, "val_per_category": False,
              "categories": False}
_ROOM_KEYS = {"areas": True, "rooms_per_area": True, "points_per_m2": True}
_TOP_KEYS = {"part": True, "rooms": True, "seed": True}


def _check_keys(block: Any, keys: Mapping[str, bool], where: str) -> Mapping[str, Any]:
    if not isinstance(block, Mapping):
        raise ValueError(f"{where} must be a mapping with keys {sorted(keys)}, got {type(block).__name__}")
    unknown = sorted(set(block) - set(keys))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(keys)}")
    missing = sorted(k for k, required in keys.items() if required and k not in block)
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}")
    return block


def check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the seg stand-in settings block; return it normalised (defaults filled in).

    The block::

        seed: 0                      # dataset seed (>= 0)
        part:                        # ShapeNetPart stand-in
          train_per_category: 12     # shapes per category (>= 1)
          test_per_category: 6       # (>= 1)
          n_points: 1024             # points per shape file
          val_per_category: 0        # optional (>= 0, default 0: empty val list)
          categories: [...]          # optional, keys of PART_CATEGORIES (default all 7)
        rooms:                       # S3DIS stand-in
          areas: [1, 2, 3, 5]        # S3DIS area numbers (1..6)
          rooms_per_area: 2
          points_per_m2: 300         # surface sampling density

    Raises:
        ValueError: naming the offending key, e.g. ``settings.part.n_points``.
    """
    _check_keys(settings, _TOP_KEYS, "settings")
    part = _check_keys(settings["part"], _PART_KEYS, "settings.part")
    rooms = _check_keys(settings["rooms"], _ROOM_KEYS, "settings.rooms")

    def named(where: str, check, *args):
        try:
            return check(*args)
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None

    seed = named("settings.seed", _check_int, "seed", settings["seed"], 0)
    normal_part = {"train_per_category": part["train_per_category"], "test_per_category": part["test_per_category"],
                   "n_points": part["n_points"], "val_per_category": part.get("val_per_category", 0),
                   "categories": list(part.get("categories", PART_CATEGORIES))}
    for key in ("train_per_category", "test_per_category", "n_points", "val_per_category"):
        normal_part[key] = named(f"settings.part.{key}", _check_int, key, normal_part[key], 0 if key.startswith("val") else 1)
    normal_part["categories"] = list(named("settings.part.categories", _check_categories, normal_part["categories"]))
    areas = named("settings.rooms", _check_room_arguments, rooms["areas"], rooms["rooms_per_area"],
                  rooms["points_per_m2"], seed)
    normal_rooms = {"areas": list(areas), "rooms_per_area": int(rooms["rooms_per_area"]),
                    "points_per_m2": float(rooms["points_per_m2"])}
    return {"seed": seed, "part": normal_part, "rooms": normal_rooms}


_OUTPUTS = {SHAPENETPART_LAYOUT, S3DIS_LAYOUT, SUMMARY_FILE}


def build_seg_standins(out_dir: Path, settings: Mapping[str, Any], log: TextIO = sys.stderr) -> dict[str, Any]:
    """Write both segmentation stand-ins into ``out_dir``, atomically, and return a summary.

    ``out_dir`` receives ``shapenetcore_partanno_segmentation_benchmark_v0_normal/``,
    ``Stanford3dDataset_v1.2_Aligned_Version/`` and ``seg_standins.json`` (the summary).
    Everything is built in a temporary folder next to ``out_dir`` and renamed into place, so
    ``out_dir`` is either the previous complete build or the new one. ``out_dir`` must be a
    folder of its own: an existing one holding anything else is refused, never deleted.

    Args:
        out_dir: the folder to (re)create.
        settings: the block described in ``check_settings``.
        log: where progress lines go.

    Returns:
        {"settings": normalised settings, "shapenetpart": {split: shapes, "seconds": s},
         "s3dis": {"rooms": {"Area_<k>": [room names]}, "points": n, "class_points": {...}, "seconds": s}}
    """
    out_dir = Path(out_dir)
    settings = check_settings(settings)
    if out_dir.exists():
        foreign = sorted(p.name for p in out_dir.iterdir()) if out_dir.is_dir() else [out_dir.name]
        foreign = [name for name in foreign if name not in _OUTPUTS]
        if foreign or not out_dir.is_dir():
            raise FileExistsError(f"{out_dir} exists and holds other things ({foreign}); "
                                  f"build_seg_standins needs a folder of its own")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        seed, part, rooms = settings["seed"], settings["part"], settings["rooms"]
        started = time.time()
        per_split = {"train": part["train_per_category"], "val": part["val_per_category"],
                     "test": part["test_per_category"]}
        shapes = _shapenetpart_into(tmp / SHAPENETPART_LAYOUT, per_split, part["n_points"], seed,
                                    tuple(part["categories"]), log)
        shapes["seconds"] = round(time.time() - started, 3)
        started = time.time()
        scenes = _s3dis_into(tmp / S3DIS_LAYOUT, rooms["areas"], rooms["rooms_per_area"], rooms["points_per_m2"],
                             seed, log)
        scenes["seconds"] = round(time.time() - started, 3)
        summary = {"settings": settings, "shapenetpart": shapes, "s3dis": scenes}
        (tmp / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True))
        if out_dir.exists():  # swap: the old build moves aside, then goes
            old = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.old-"))
            os.rename(out_dir, old / "build")
            os.rename(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    print(f"[seg-standins] wrote {out_dir}: {sum(shapes[s] for s in PART_SPLITS)} part shapes, "
          f"{sum(len(v) for v in scenes['rooms'].values())} rooms ({scenes['points']} points)", file=log, flush=True)
    return summary
