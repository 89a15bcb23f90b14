"""The part-labelled mesh of the demo's synthetic shapes, and the categories and parts it names.

Conventions (the same as ShapeNet's, see ``picat.geometry``):

* Y is up, the object stands on the ground plane ``y = 0`` and its front faces ``+Z``;
  the bounding box is centred on the Y axis (``x`` and ``z``).
* Units are roughly real-world metres (a mug is ~0.1 high, an airplane ~30 long); the
  pipeline normalises every mesh into the unit sphere anyway.
* Parts may overlap (no boolean union); each primitive is a closed, outward-oriented
  surface, so every connected component of a generated mesh is watertight.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import trimesh

CATEGORIES: tuple[str, ...] = (
    "table",
    "chair",
    "lamp",
    "mug",
    "airplane",
    "bottle",
    "car",
    "shelf",
    "bed",
    "sofa",
    "bench",
    "monitor",
    "guitar",
)

# Categories beyond the demo's 13, designed to overlap in shape with them and with each
# other, as ModelNet40's confusable classes do: stool vs table, desk vs table, cabinet,
# dresser, wardrobe, night_stand and tv_stand as boxes with fronts, vase and cup vs bottle
# and mug, flower_pot vs vase and lamp, armchair vs chair and sofa. Names follow
# ModelNet40's where it has the class. They come after CATEGORIES, so every index into
# CATEGORIES (the demo corpus, the stand-ins' seeds) is also its index in ALL_CATEGORIES;
# the demo suite itself uses CATEGORIES only.
EXTRA_CATEGORIES: tuple[str, ...] = (
    "stool",
    "desk",
    "cabinet",
    "dresser",
    "wardrobe",
    "night_stand",
    "vase",
    "cup",
    "armchair",
    "tv_stand",
    "flower_pot",
    "bathtub",
)
ALL_CATEGORIES: tuple[str, ...] = CATEGORIES + EXTRA_CATEGORIES
# What a config's ``categories`` key names: the demo's 13, or all 25 (the evidence suite's).
CATEGORY_SETS: dict[str, tuple[str, ...]] = {"demo": CATEGORIES, "all": ALL_CATEGORIES}


def categories_of(block: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """The categories a config block (corpus, standins) names: ``categories`` "demo" (default) or "all".

    Raises:
        ValueError: any other value, naming ``key``.
    """
    name = block.get("categories", "demo")
    if name not in CATEGORY_SETS:
        raise ValueError(f"{key} must be one of {sorted(CATEGORY_SETS)}, got {name!r}")
    return CATEGORY_SETS[name]

PART_NAMES: dict[str, tuple[str, ...]] = {
    "table": ("top", "leg"),
    "chair": ("seat", "back", "leg", "arm"),
    "lamp": ("base", "stem", "shade"),
    "mug": ("body", "handle"),
    "airplane": ("fuselage", "wing", "tail", "engine"),
    "bottle": ("body", "neck", "cap"),
    "car": ("body", "cabin", "wheel"),
    "shelf": ("frame", "board"),
    "bed": ("frame", "mattress", "headboard", "pillow"),
    "sofa": ("base", "back", "arm", "cushion"),
    "bench": ("seat", "leg", "back"),
    "monitor": ("screen", "stand", "base"),
    "guitar": ("body", "neck", "head"),
    "stool": ("seat", "leg", "footrest"),
    "desk": ("top", "leg", "drawer"),
    "cabinet": ("body", "door", "handle"),
    "dresser": ("body", "drawer", "handle"),
    "wardrobe": ("body", "door", "drawer", "handle"),
    "night_stand": ("body", "drawer", "leg"),
    "vase": ("body", "neck"),
    "cup": ("body", "base"),
    "armchair": ("seat", "back", "arm", "leg"),
    "tv_stand": ("body", "door", "leg"),
    "flower_pot": ("pot", "plant"),
    "bathtub": ("tub", "foot", "faucet"),
}

# Parts that only some instances have (chairs without arms, benches without a back);
# every other part is present in every instance of its category.
OPTIONAL_PARTS: dict[str, tuple[str, ...]] = {
    "chair": ("arm",),
    "bench": ("back",),
    "stool": ("footrest",),
    "desk": ("drawer",),
    "cabinet": ("handle",),
    "dresser": ("handle",),
    "wardrobe": ("drawer", "handle"),
    "night_stand": ("leg",),
    "tv_stand": ("door", "leg"),
    "bathtub": ("foot", "faucet"),
}


@dataclass(frozen=True, eq=False)
class PartMesh:
    """A triangle mesh whose faces carry part labels.

    Attributes:
        vertices: (V, 3) float64 vertex positions (Y up, front towards +Z).
        faces: (F, 3) int64 vertex indices, counter-clockwise seen from outside.
        face_labels: (F,) int64 index of each face's part in ``PART_NAMES[category]``.
        category: one of ``ALL_CATEGORIES``.
    """

    vertices: np.ndarray
    faces: np.ndarray
    face_labels: np.ndarray
    category: str

    def __post_init__(self) -> None:
        if self.category not in PART_NAMES:
            raise ValueError(f"unknown category {self.category!r}; valid categories: {', '.join(ALL_CATEGORIES)}")
        # Private read-only copies: frozen means the arrays cannot change behind its back.
        vertices = np.array(self.vertices, dtype=np.float64)
        faces = np.array(self.faces, dtype=np.int64)
        labels = np.array(self.face_labels, dtype=np.int64)
        if vertices.ndim != 2 or vertices.shape[1] != 3:
            raise ValueError(f"vertices must have shape (V, 3), got {vertices.shape}")
        if not np.isfinite(vertices).all():
            raise ValueError(f"{int((~np.isfinite(vertices)).any(axis=1).sum())} vertices are not finite")
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"faces must have shape (F, 3), got {faces.shape}")
        if labels.shape != (len(faces),):
            raise ValueError(f"face_labels must have shape ({len(faces)},), got {labels.shape}")
        if len(faces) and (faces.min() < 0 or faces.max() >= len(vertices)):
            raise ValueError(f"faces index vertices outside [0, {len(vertices)})")
        n_parts = len(PART_NAMES[self.category])
        if len(labels) and (labels.min() < 0 or labels.max() >= n_parts):
            raise ValueError(f"face_labels must lie in [0, {n_parts}) for {self.category!r}")
        for name, array in (("vertices", vertices), ("faces", faces), ("face_labels", labels)):
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    @property
    def part_names(self) -> tuple[str, ...]:
        """Names of the parts, indexed by ``face_labels``."""
        return PART_NAMES[self.category]

    @property
    def n_faces(self) -> int:
        return int(len(self.faces))

    def to_trimesh(self) -> trimesh.Trimesh:
        """The geometry as an unprocessed ``trimesh.Trimesh`` (same vertex and face order)."""
        return trimesh.Trimesh(vertices=self.vertices.copy(), faces=self.faces.copy(), process=False)
