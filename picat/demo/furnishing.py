"""Furnishing the S3DIS stand-in's rooms: walls, mounted boxes, furniture placed without overlaps.

A ``Room`` is built in its own frame (x in [0, width], y in [0, depth], Z up).
``add_structure`` mounts doors, windows and boards as thin boxes on the walls, and sometimes
a column or a beam; ``furnish`` places furniture from the synthetic generator (table, chair,
sofa; shelf as bookcase; lamps, monitors, mugs, bottles and boxes as clutter), turned from
Y up to Z up and placed on the floor (or on tables) without overlapping footprints, chairs
at tables. Every shape gets a held-out seed with ``ROOM_SEED_SPLIT`` in bits 30-31 (see
``picat.demo.seeding``), so no furniture item is ever a classification or
part-segmentation stand-in shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import trimesh

from picat.demo.part_mesh import PartMesh
from picat.demo.recipes import generate_shape
from picat.demo.seeding import PURPOSE_SHAPE, ROOM_SEED_SPLIT, draw_held_out_seed

_WALL_GAP = 0.02  # furniture stands this far from the wall
_DOOR_CLEARANCE = 0.9  # floor kept free in front of a door
_FURNITURE_TRIES = 30


def _rotation_z(angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about +Z."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


# Y up (synthetic, front +Z) -> Z up (S3DIS): (x, y, z) -> (x, -z, y), a proper rotation;
# the front then faces -Y.
_Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def _facing_yaw(direction: np.ndarray) -> float:
    """Yaw about Z that turns a Z-up object's front (-Y) towards the (2,) ``direction``."""
    return math.atan2(float(direction[0]), -float(direction[1]))


@dataclass
class Placed:
    """A mesh in room coordinates: (V, 3) vertices, (F, 3) faces, its S3DIS class."""

    cls: str
    vertices: np.ndarray
    faces: np.ndarray
    face_labels: np.ndarray | None = None  # the synthetic part of each face, when it has parts
    yaw: float = 0.0  # its front faces (sin yaw, -cos yaw)
    footprint: int | None = None  # index in Room.footprints, once placed on the floor

    @property
    def lo(self) -> np.ndarray:
        return self.vertices.min(axis=0)

    @property
    def hi(self) -> np.ndarray:
        return self.vertices.max(axis=0)


def _orient(mesh: PartMesh, cls: str, yaw: float, scale: np.ndarray) -> Placed:
    """``mesh`` turned Z up, scaled by (3,) ``scale`` (object axes, Z up), turned by ``yaw``,
    standing on z = 0 with its footprint centred on the origin."""
    vertices = (mesh.vertices @ _Y_UP_TO_Z_UP.T) * scale
    vertices = vertices @ _rotation_z(yaw).T
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    vertices = vertices - np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return Placed(cls, vertices, np.asarray(mesh.faces), np.asarray(mesh.face_labels), yaw)


def _orient_again(placed: Placed, yaw: float) -> Placed:
    """``placed`` (footprint centred on the origin) turned by ``yaw`` more about Z, re-centred."""
    vertices = placed.vertices @ _rotation_z(yaw).T
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    vertices = vertices - np.array([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return Placed(placed.cls, vertices, placed.faces, placed.face_labels, placed.yaw + yaw)


def _moved(placed: Placed, offset: Sequence[float], footprint: int | None = None) -> Placed:
    return Placed(placed.cls, placed.vertices + np.asarray(offset, dtype=np.float64), placed.faces, placed.face_labels,
                   placed.yaw, footprint)


@dataclass(frozen=True)
class RoomBox:
    """An axis-aligned box [lo, hi] of class ``cls`` (a door, a column...)."""

    cls: str
    lo: np.ndarray
    hi: np.ndarray


def _overlap(lo_a: np.ndarray, hi_a: np.ndarray, lo_b: np.ndarray, hi_b: np.ndarray, margin: float = 0.0) -> bool:
    return bool(np.all(lo_a < hi_b + margin) and np.all(lo_b < hi_a + margin))


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


@dataclass
class Room:
    """A room being furnished, in its own frame: x in [0, width], y in [0, depth], z up."""

    kind: str
    width: float
    depth: float
    height: float
    seed: int
    key: tuple[int, ...]
    rng: np.random.Generator
    boxes: list[RoomBox] = field(default_factory=list)
    meshes: list[Placed] = field(default_factory=list)
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
        seed = draw_held_out_seed(self.seed, self.key + (self.n_shapes, PURPOSE_SHAPE), ROOM_SEED_SPLIT)
        return generate_shape(category, seed)

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
            self.boxes.append(RoomBox(cls, lo, hi))
            return True
        return False

    # -- footprints ------------------------------------------------------------------

    def free(self, lo: np.ndarray, hi: np.ndarray, ignore: int | None = None) -> bool:
        """Whether the footprint [lo, hi] (2,) is inside the room and overlaps nothing placed."""
        if lo[0] < 0.0 or lo[1] < 0.0 or hi[0] > self.width or hi[1] > self.depth:
            return False
        return not any(_overlap(lo, hi, a, b) for i, (a, b) in enumerate(self.footprints) if i != ignore)

    def place(self, placed: Placed, centre_xy: np.ndarray, z: float = 0.0, ignore: int | None = None) -> Placed | None:
        """``placed`` moved to ``centre_xy`` (footprint centre) at height z, if its footprint is free."""
        moved = _moved(placed, (centre_xy[0], centre_xy[1], z), len(self.footprints))
        lo, hi = moved.lo[:2], moved.hi[:2]
        if not self.free(lo, hi, ignore):
            return None
        self.footprints.append((lo, hi))
        self.meshes.append(moved)
        return moved

    def against_wall(self, upright: Placed) -> Placed | None:
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

    def anywhere(self, placed: Placed, region: tuple[np.ndarray, np.ndarray] | None = None) -> Placed | None:
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

    def oriented(
        self, category: str, cls: str, yaw: float, scale: float | np.ndarray, height: float | None = None
    ) -> Placed:
        """The room's next ``category`` shape, Z up, scaled by ``scale`` (object axes), and
        vertically to ``height`` metres when given (desks and meeting tables: the synthetic
        tables include coffee-table heights)."""
        mesh = self.shape(category)
        scale = np.array(np.broadcast_to(np.asarray(scale, dtype=np.float64), (3,)))
        if height is not None:
            scale[2] = height / float(np.ptp(mesh.vertices[:, 1]))
        return _orient(mesh, cls, yaw, scale)

    def chairs_at(self, table: Placed, count: int) -> None:
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

    def on_top(self, table: Placed, categories: Sequence[str], count: int) -> None:
        """Up to ``count`` small clutter objects standing on the table's top."""
        labels = table.face_labels
        top = table.vertices[np.unique(table.faces[labels == 0])] if labels is not None else table.vertices
        lo, hi = top.min(axis=0), top.max(axis=0)
        taken: list[tuple[np.ndarray, np.ndarray]] = []
        for _ in range(count):
            category = str(self.rng.choice(categories))
            # Facing where the table faces (a desk's chair), give or take.
            item = self.oriented(
                category, "clutter", table.yaw + float(self.rng.uniform(-0.4, 0.4)), self.rng.uniform(0.9, 1.1)
            )
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

    def floor_clutter(self, item: Placed | None = None) -> None:
        """A lamp, a bin or a box on the floor, against a wall or anywhere."""
        if item is None:
            choice = self.rng.random()
            if choice < 0.4:
                item = self.oriented("lamp", "clutter", float(self.rng.uniform(0, 2 * math.pi)), 1.0)
            else:  # a box (carton, bin, cabinet): S3DIS's clutter is mostly such things
                size = self.rng.uniform([0.3, 0.3, 0.2], [0.8, 0.6, 0.9])
                box = trimesh.creation.box(extents=size)
                vertices = box.vertices - np.array([0.0, 0.0, -size[2] / 2])
                item = Placed("clutter", vertices, np.asarray(box.faces))
        if self.rng.random() < 0.6:
            self.against_wall(item)
        else:
            self.anywhere(item)


def add_structure(room: Room) -> None:
    """Doors, windows, boards, and sometimes a column or a beam."""
    rng, kind, height = room.rng, room.kind, room.height
    n_doors = int(rng.integers(2, 5)) if kind == "hallway" else int(rng.integers(1, 3))
    for _ in range(n_doors):
        room.mount(
            "door", rng.uniform(0.85, 1.0), 0.0, rng.uniform(2.0, min(2.2, height - 0.2)), rng.uniform(0.04, 0.08)
        )
    n_windows = 0 if kind == "hallway" else int(rng.integers(0, 3))
    for _ in range(n_windows):
        sill = rng.uniform(0.8, 1.0)
        room.mount(
            "window", rng.uniform(1.0, 2.0), sill, min(sill + rng.uniform(1.0, 1.5), height - 0.2),
            rng.uniform(0.03, 0.1),
        )
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
                room.boxes.append(RoomBox("column", lo, hi))
                break
    if rng.random() < 0.3:  # a beam across the ceiling
        width, drop = rng.uniform(0.25, 0.5), rng.uniform(0.3, 0.5)
        if room.width >= room.depth:  # across the short side
            x = rng.uniform(0.5, room.width - 0.5 - width)
            room.boxes.append(RoomBox(
                "beam", np.array([x, 0.0, height - drop]), np.array([x + width, room.depth, height])
            ))
        else:
            y = rng.uniform(0.5, room.depth - 0.5 - width)
            room.boxes.append(RoomBox(
                "beam", np.array([0.0, y, height - drop]), np.array([room.width, y + width, height])
            ))


def furnish(room: Room) -> None:
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
        table = room.anywhere(
            room.oriented("table", "table", float(rng.choice([0.0, math.pi / 2])), rng.uniform(0.8, 1.0))
        )
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
