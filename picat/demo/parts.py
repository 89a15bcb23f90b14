"""The ShapeNetPart stand-in: held-out part-labelled shapes written in ShapeNetPart's genuine text layout.

The demo suite evaluates part segmentation (Table 4) without downloading ShapeNetPart.
``write_shapenetpart_standin`` takes its place (the normal-resampled text layout,
``shapenetcore_partanno_segmentation_benchmark_v0_normal``), read unchanged by the real
reader (``picat.datasets.shapenetpart.read_shapenetpart_txt``). The synthetic categories that
ShapeNetPart also has (airplane, car, chair, guitar, lamp, mug, table) are sampled
area-uniformly on their surface with the sampled faces' normals and their part labels
mapped onto ShapeNetPart's global part labels (``PART_LABELS``), then centred (bounding box)
and scaled into the unit sphere, Y up as ShapeNet. Only the categories used are listed in
``synsetoffset2category.txt`` (with their real synset ids, in the genuine order); a
ShapeNetPart part the synthetic shape lacks (a car's hood, a lamp's bulb, a table's drawer or
support) never occurs.

Held out by construction (``picat.demo.seeding``): every shape gets a seed in
[2**32, 2**33), never a pre-training corpus seed (uint32), with its split (train 0, test 1,
val 2, as ``picat.demo.seeding.SPLITS``) in bits 30-31, so splits never share a shape. The
30 low bits come from ``SeedSequence(seed, spawn_key=(PART_TAG, ...))``; the dataset tag
keeps these shapes apart from the classification stand-ins' (which have none) except by
30-bit chance.

Determinism: every random draw comes from a generator seeded by (seed, dataset, split,
category, object index, purpose), so the same arguments write byte-identical files, and
object i of a category does not depend on how many others are asked for.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import trimesh

from picat.demo.folders import building, write_ascii
from picat.demo.part_mesh import CATEGORIES
from picat.demo.recipes import generate_shape
from picat.demo.seeding import (
    PART_TAG,
    PURPOSE_LIST,
    PURPOSE_SAMPLE,
    PURPOSE_SHAPE,
    SPLITS,
    check_int,
    draw_held_out_seed,
    stream,
)
from picat.meshes import normalisation_transform

SHAPENETPART_LAYOUT = "shapenetcore_partanno_segmentation_benchmark_v0_normal"

# Synthetic category -> (ShapeNetPart category, synset id).
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
    check_int("index", index, 0)
    check_int("n_points", n_points, 1)
    check_int("seed", seed, 0)
    split_value = SPLITS.index(split)
    key = (PART_TAG, split_value, CATEGORIES.index(category), index)
    shape_seed = draw_held_out_seed(seed, key + (PURPOSE_SHAPE,), split_value)
    mesh = generate_shape(category, shape_seed)
    lookup = np.array([PART_LABELS[category][name] for name in mesh.part_names], dtype=np.int64)
    rng = stream(seed, key + (PURPOSE_SAMPLE,))
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


def write_shapenetpart_into(
    layout: Path, per_split: Mapping[str, int], n_points: int, seed: int, categories: Sequence[str], log: TextIO | None,
) -> dict[str, int]:
    """Write the layout's files into the folder ``layout``; shapes per split."""
    ordered = sorted(categories, key=lambda c: PART_CATEGORIES[c][0])  # the genuine file is alphabetical
    write_ascii(layout / "synsetoffset2category.txt",
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
                write_ascii(layout / shape.synset / f"{shape.shape_id}.txt", buffer.getvalue())
                entries.append(f"shape_data/{shape.synset}/{shape.shape_id}")
        order = stream(seed, (PART_TAG, SPLITS.index(split), PURPOSE_LIST)).permutation(len(entries))
        write_ascii(layout / "train_test_split" / f"shuffled_{split}_file_list.json",
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
    per_split = {"train": check_int("train_per_category", train_per_category, 1),
                 "val": check_int("val_per_category", val_per_category, 0),
                 "test": check_int("test_per_category", test_per_category, 1)}
    check_int("n_points", n_points, 1)
    check_int("seed", seed, 0)
    return per_split, check_part_categories(categories)


def check_part_categories(categories: Sequence[str]) -> tuple[str, ...]:
    if isinstance(categories, str):
        raise ValueError(f"categories must be a list of names, got the string {categories!r}")
    categories = tuple(categories)
    unknown = [c for c in categories if c not in PART_CATEGORIES]
    if unknown or not categories or len(set(categories)) != len(categories):
        raise ValueError(
            f"categories must be distinct names among {', '.join(PART_CATEGORIES)}, got {list(categories)}"
        )
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
    with building(target) as tmp:
        write_shapenetpart_into(tmp, per_split, int(n_points), int(seed), categories, None)
    return target
