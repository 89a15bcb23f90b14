"""Held-out downstream stand-ins for ModelNet40 and the three ScanObjectNN variants.

The demo suite evaluates pre-trained encoders on classification without downloading
ModelNet40 or ScanObjectNN. These stand-ins build comparable point-cloud sets from the
synthetic generator (``picat.demo.recipes``), one class per synthetic category:

* ``clean_objects`` takes ModelNet40's place. ModelNet40 as the point-cloud literature
  uses it (PointNet's h5 files) is complete CAD models sampled uniformly on their surface,
  centred and scaled into the unit sphere, in a canonical pose. Here: area-uniform samples
  of the whole synthetic mesh, Y up, front +Z.
* ``scan_objects`` takes ScanObjectNN's place: partial, noisy, occluded scans of each
  object in a small room, by the virtual scanner of ``picat.demo.scanner`` (the scene, the
  camera, visibility, depth noise and per-pixel sampling are described there). The
  variants are read off that one scan, as ScanObjectNN's are read off one reconstruction:

  - ``obj_only`` (OBJ_ONLY): the object's own points of the scan. Partial and with holes
    where neighbours hide it, but no background.
  - ``obj_bg`` (OBJ_BG): the points inside the object's bounding box, enlarged a little
    (``BOX_MARGIN_*``): the object plus floor, wall and fragments of neighbours. The
    background share is kept within ``BG_SHARE_RANGE`` (15-40 %: a minority, but clearly
    present) by thinning whichever side is over-represented; about 40 % of the objects
    need none (tables and airplanes over a wide floor hit the top, big furniture hiding
    the floor the bottom).
  - ``pb_t50_rs`` (PB_T50_RS, the hardest variant): the same scan cropped by a perturbed
    box: shifted by up to 50 % of its size along each axis (T50), turned by a uniform
    random angle about the up axis (R; the points are expressed in the turned box's
    frame, so the object appears turned), scaled by a random factor in
    ``PB_SCALE_RANGE`` (S) and jittered. The crop cuts the object and takes in more
    background, in its natural share. ScanObjectNN's scale range could not be checked
    here; its release names this variant's file ``*_augmentedrot_scale75``, read as
    factors from 0.75, hence [0.75, 1.25]. A uniform scale only changes what the box
    crops, since every cloud is renormalised. Boxes keeping less than
    ``PB_MIN_OBJECT_FRACTION`` of the visible object are redrawn (ScanObjectNN's boxes
    always keep much of it; a sliver would be a mislabelled cloud, not a hard one).

  (``BOX_MARGIN_*``, ``BG_SHARE_RANGE`` and the ``PB_*`` constants are the scanner's.) All
  variants keep Y up (apart from the pb_t50_rs turn about Y). ``scan_variants`` makes
  several variants of the same objects at once, for about the cost of one: the scan is
  the expensive part (13 categories x 30 objects x 1024 points: about 25 s for all three
  together on one core, and about that for each variant alone).

Normalisation (every set): bounding-box centre of the cloud at the origin, farthest
point at distance 1 (``picat.meshes.normalisation_transform`` applied to the points).
``StandinSet.transforms`` records, per cloud, the similarity from the object's
``generate_shape`` frame to the cloud's, so the mesh can be laid over its points.

Held out by construction (``picat.demo.seeding``): the pre-training corpus
(``demo_objects``) uses shape seeds that are uint32 values, below 2**32. Every stand-in
object (and every neighbour in its scene) gets a seed in [2**32, 2**33):
``2**32 + split_index * 2**30 + 30 random bits``, the bits drawn from
``SeedSequence(seed, spawn_key=(split_index, category_index, object_index, 0))``. No
stand-in object can be a corpus object, and objects of different splits differ in bits
30-31, so train, test and val never share an object (nor a neighbour) whatever the seeds.
Within one split, two objects share a seed only by chance (about n**2 / 2**31: under 1e-4
for a few hundred objects).

Determinism: every random draw comes from a generator seeded by (seed, split, category,
object index, purpose), so the same arguments give byte-identical arrays, object i of a
category does not depend on ``per_category`` nor on which other categories are asked
for, and the same (seed, split) gives the same shapes in ``clean_objects`` and the same
scenes and scan in every scan variant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import trimesh

from picat.demo.part_mesh import ALL_CATEGORIES, CATEGORIES
from picat.demo.recipes import generate_shape
from picat.demo.scanner import (
    PB_JITTER,
    SCAN_VARIANTS,
    NeighbourPool,
    ScanPoints,
    Scene,
    build_scene,
    scan_scene,
    variant_crop,
)
from picat.demo.seeding import check_int, draw_held_out_seed, index_of_split, stream
from picat.meshes import normalisation_transform


@dataclass(frozen=True, eq=False)
class StandinSet:
    """A labelled point-cloud set.

    Attributes:
        points: (n, N, 3) float32 clouds, each normalised (bounding-box centre at the
            origin, farthest point at distance 1).
        labels: (n,) int64 index into ``class_names``.
        class_names: the categories, in label order.
        masks: (n, N) int8, 1 = object point, 0 = background, for scan variants; None
            for clean sets.
        shape_seeds: (n,) int64 ``generate_shape`` seed of each object, all in
            [2**32, 2**33) (never a corpus seed).
        transforms: (n, 4, 4) float64 similarity taking ``generate_shape(class, seed)``
            coordinates to the cloud's frame (provenance: the object mesh can be laid
            over its points). Rotation about Y and uniform scale only.
        normals: (n, N, 3) float32 unit surface normals of the points (clean sets: the
            sampled faces' normals, which a rotation-and-uniform-scale frame leaves
            unchanged); None for scans (a depth scan has no normals).
    """

    points: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    masks: np.ndarray | None
    shape_seeds: np.ndarray
    transforms: np.ndarray | None = None
    normals: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        if self.points.ndim != 3 or self.points.shape[0] != n or self.points.shape[2] != 3:
            raise ValueError(f"points must have shape ({n}, N, 3), got {self.points.shape}")
        if self.masks is not None and self.masks.shape != self.points.shape[:2]:
            raise ValueError(f"masks must have shape {self.points.shape[:2]}, got {self.masks.shape}")
        if self.shape_seeds.shape != (n,):
            raise ValueError(f"shape_seeds must have shape ({n},), got {self.shape_seeds.shape}")
        if self.transforms is not None and self.transforms.shape != (n, 4, 4):
            raise ValueError(f"transforms must have shape ({n}, 4, 4), got {self.transforms.shape}")
        if self.normals is not None and self.normals.shape != self.points.shape:
            raise ValueError(f"normals must have the points' shape {self.points.shape}, got {self.normals.shape}")

    def __len__(self) -> int:
        return int(len(self.labels))


# ---------------------------------------------------------------------------------------
# Seeds


# Streams of one object (last element of its SeedSequence spawn key).
_SHAPE_STREAM, _SCENE_STREAM, _SCAN_STREAM, _CLEAN_STREAM = 0, 1, 2, 3
_VARIANT_STREAM = 4  # + index in SCAN_VARIANTS
_YAW_STREAM = 16  # after the variant streams (4 + len(SCAN_VARIANTS)), with room for more

# How a cloud is turned about the up axis: "canonical" keeps the object's front towards +Z
# (ModelNet40's aligned models), "random" turns it by a uniform angle (an object standing
# any way in its room, as ScanObjectNN's scans are expressed in the room's frame).
YAW_MODES = ("canonical", "random")


def object_key(split_index: int, category: str, index: int) -> tuple[int, int, int]:
    """Spawn key of object ``index`` of ``category`` in a split.

    Keyed by the category's place in ``ALL_CATEGORIES`` (not in the caller's list), so an
    object does not change when a subset of categories is requested. The demo's
    ``CATEGORIES`` come first there, so their objects are those they always were.
    """
    return (split_index, ALL_CATEGORIES.index(category), index)


def object_seed(seed: int, key: tuple[int, int, int]) -> int:
    """The held-out ``generate_shape`` seed of the object with spawn key ``key`` (its split in bits 30-31)."""
    return draw_held_out_seed(seed, key + (_SHAPE_STREAM,), key[0])


def _check_arguments(per_category: int, n_points: int, seed: int, categories: Sequence[str]) -> tuple[str, ...]:
    for name, value, low in (("per_category", per_category, 1), ("n_points", n_points, 1), ("seed", seed, 0)):
        check_int(name, value, low)
    categories = tuple(categories)
    if not categories:
        raise ValueError("categories must not be empty")
    unknown = [c for c in categories if c not in ALL_CATEGORIES]
    if unknown:
        raise ValueError(f"unknown categories {unknown}; valid categories: {', '.join(ALL_CATEGORIES)}")
    if len(set(categories)) != len(categories):
        raise ValueError(f"categories must be distinct, got {categories}")
    return categories


# ---------------------------------------------------------------------------------------
# Shared helpers


def _normalise(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre (bounding box) and scale ``points`` (M, 3) into the unit sphere.

    Returns:
        (M, 3) float64 normalised points and the (4, 4) transform that did it.
    """
    transform = normalisation_transform(points)
    return points @ transform[:3, :3].T + transform[:3, 3], transform


def _resample(
    candidates: np.ndarray, n_points: int, rng: np.random.Generator, weights: np.ndarray | None = None
) -> np.ndarray:
    """Indices of ``n_points`` of ``candidates`` (an index array), without repeats when possible.

    ``weights`` (one per candidate) make some candidates likelier (without replacement,
    so they matter only when there are many more candidates than points).
    """
    if n_points == 0:
        return np.zeros(0, dtype=np.int64)
    p = None if weights is None else weights / weights.sum()
    if len(candidates) >= n_points:
        return np.sort(rng.choice(candidates, size=n_points, replace=False, p=p))
    # Too few points even after rescanning (rare): keep all, repeat some.
    extra = rng.choice(candidates, size=n_points - len(candidates), replace=True, p=p)
    return np.sort(np.concatenate([candidates, extra]))


def _rotation_about_up(angle: float) -> np.ndarray:
    """(3, 3) rotation by ``angle`` radians about +Y."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _turned(points: np.ndarray, normals: np.ndarray | None, transform: np.ndarray, yaw: str,
            rng_of_object: Callable[[], np.random.Generator]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """A normalised cloud (N, 3) turned about the up axis by a random angle, and renormalised.

    ``yaw`` "canonical" returns the inputs unchanged (and draws nothing). The turn moves the
    axis-aligned bounding box, so the cloud is renormalised (box centre at the origin,
    farthest point at 1) and ``transform`` (4, 4) composed with both; normals (N, 3) turn too.
    """
    if yaw not in YAW_MODES:
        raise ValueError(f"yaw must be one of {YAW_MODES}, got {yaw!r}")
    if yaw == "canonical":
        return points, normals, transform
    rotation = _rotation_about_up(float(rng_of_object().uniform(-np.pi, np.pi)))
    turned, normalisation = _normalise(points @ rotation.T)
    turn = np.eye(4)
    turn[:3, :3] = rotation
    if normals is not None:
        normals = normals @ rotation.T
    return turned, normals, normalisation @ turn @ transform


def _assemble(
    clouds: list[np.ndarray], labels: list[int], categories: tuple[str, ...], masks: list[np.ndarray] | None,
    seeds: list[int], transforms: list[np.ndarray],
) -> StandinSet:
    return StandinSet(
        points=np.stack(clouds).astype(np.float32),
        labels=np.asarray(labels, dtype=np.int64),
        class_names=categories,
        masks=None if masks is None else np.stack(masks).astype(np.int8),
        shape_seeds=np.asarray(seeds, dtype=np.int64),
        transforms=np.stack(transforms).astype(np.float64),
    )


# ---------------------------------------------------------------------------------------
# ModelNet40 stand-in


def clean_objects(
    per_category: int, n_points: int, seed: int, split: str, categories: Sequence[str] = CATEGORIES,
    yaw: str = "canonical",
) -> StandinSet:
    """Complete, uniformly sampled, normalised objects (ModelNet40's place), canonical pose by default.

    Args:
        per_category: objects per category.
        n_points: points per object N.
        seed: dataset seed (non-negative).
        split: one of ``SPLITS``; different splits never share an object.
        categories: the classes, in label order.
        yaw: "canonical" (front +Z, as ModelNet40's aligned models) or "random" (each object
            turned about the up axis by its own uniform angle; the same objects and points).

    Returns:
        A StandinSet of ``len(categories) * per_category`` clouds, category-major (object
        i of class c at ``c * per_category + i``), ``masks`` None.
    """
    categories = _check_arguments(per_category, n_points, seed, categories)
    split_index = index_of_split(split)
    clouds, labels, seeds, transforms, normals = [], [], [], [], []
    for label, category in enumerate(categories):
        for index in range(per_category):
            key = object_key(split_index, category, index)
            shape_seed = object_seed(seed, key)
            mesh = generate_shape(category, shape_seed).to_trimesh()
            rng = stream(seed, key + (_CLEAN_STREAM,))
            points, faces = trimesh.sample.sample_surface(mesh, n_points, seed=int(rng.integers(2**63)))
            points, transform = _normalise(points)
            normal = mesh.face_normals[faces] @ transform[:3, :3].T / np.linalg.norm(transform[:3, 0])
            points, normal, transform = _turned(points, normal, transform, yaw,
                                                lambda key=key: stream(seed, key + (_YAW_STREAM,)))
            clouds.append(points)
            normals.append(normal)
            labels.append(label)
            seeds.append(shape_seed)
            transforms.append(transform)
    clean = _assemble(clouds, labels, categories, None, seeds, transforms)
    return dataclasses.replace(clean, normals=np.stack(normals).astype(np.float32))


# ---------------------------------------------------------------------------------------
# ScanObjectNN stand-ins: clouds read off the scans


def _cloud(
    variant: str, scene: Scene, scan: ScanPoints, n_points: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One cloud of ``variant`` read off the object's scan.

    Returns:
        (n_points, 3) float64 normalised points, (n_points,) bool object mask, and the
        (4, 4) transform from the object's frame to the cloud's.
    """
    crop, obj, bg, n_obj, n_bg = variant_crop(variant, scene, scan, n_points)
    if not len(obj) and (variant == "obj_only" or not len(bg)):
        raise RuntimeError(f"the {variant} crop of a scan holds no {'object ' if variant == 'obj_only' else ''}points")
    if not len(bg):  # nothing to fill a background quota with
        n_obj, n_bg = n_points, 0
    elif not len(obj):
        n_obj, n_bg = 0, n_points
    # A depth camera samples per pixel, so surfaces seen at a grazing angle come out
    # sparser: points are drawn with probability growing with cos(incidence) (and with
    # the surface they stand for).
    p = scan.cosine * scan.weight
    chosen = np.sort(np.concatenate([_resample(obj, n_obj, rng, p[obj]), _resample(bg, n_bg, rng, p[bg])]))
    local = crop.to_local(scan.points[chosen])  # the crop box's frame: turned for pb_t50_rs
    if variant == "pb_t50_rs":
        local = local + rng.normal(0.0, PB_JITTER * float(np.linalg.norm(crop.half)), size=local.shape)
    normalised, normalisation = _normalise(local)
    return normalised, scan.is_object[chosen], normalisation @ crop.local_from_world()


def scan_variants(
    variants: Sequence[str], per_category: int, n_points: int, seed: int, split: str,
    categories: Sequence[str] = CATEGORIES, yaw: str = "canonical",
) -> dict[str, StandinSet]:
    """Several scan variants at once, sharing each object's scene and scan.

    ``scan_variants(vs, ...)[v]`` equals ``scan_objects(v, ...)`` byte for byte; asking for
    all three together costs little more than one (the scan is the expensive part).
    ``yaw`` "random" turns obj_only and obj_bg clouds about the up axis (one angle per
    object, shared by both); pb_t50_rs is turned by its own perturbed box either way.
    """
    variants = tuple(variants)
    unknown = [v for v in variants if v not in SCAN_VARIANTS]
    if unknown or not variants:
        raise ValueError(f"unknown variants {unknown or variants!r}; valid variants: {', '.join(SCAN_VARIANTS)}")
    categories = _check_arguments(per_category, n_points, seed, categories)
    split_index = index_of_split(split)
    pool = NeighbourPool(int(seed), split_index)
    clouds: dict[str, list] = {v: [] for v in variants}
    masks: dict[str, list] = {v: [] for v in variants}
    transforms: dict[str, list] = {v: [] for v in variants}
    labels, seeds = [], []
    for label, category in enumerate(categories):
        for index in range(per_category):
            key = object_key(split_index, category, index)
            shape_seed = object_seed(seed, key)
            scene = build_scene(category, shape_seed, pool, stream(seed, key + (_SCENE_STREAM,)))
            scan = scan_scene(scene, n_points, stream(seed, key + (_SCAN_STREAM,)))
            for variant in variants:
                rng = stream(seed, key + (_VARIANT_STREAM + SCAN_VARIANTS.index(variant),))
                points, mask, transform = _cloud(variant, scene, scan, n_points, rng)
                if variant != "pb_t50_rs":
                    points, _, transform = _turned(points, None, transform, yaw,
                                                   lambda key=key: stream(seed, key + (_YAW_STREAM,)))
                clouds[variant].append(points)
                masks[variant].append(mask)
                transforms[variant].append(transform)
            labels.append(label)
            seeds.append(shape_seed)
    return {v: _assemble(clouds[v], labels, categories, masks[v], seeds, transforms[v]) for v in variants}


def scan_objects(
    variant: str, per_category: int, n_points: int, seed: int, split: str, categories: Sequence[str] = CATEGORIES,
    yaw: str = "canonical",
) -> StandinSet:
    """Partial, noisy single-view scans (ScanObjectNN's place), one of ``SCAN_VARIANTS``.

    See the module docstring for what each variant models; ``scan_variants`` makes
    several variants of the same objects for little more than the cost of one.

    Args:
        variant: "obj_only", "obj_bg" or "pb_t50_rs".
        per_category: objects per category.
        n_points: points per object N.
        seed: dataset seed (non-negative); the same seed and split give the same objects
            and scenes in every variant.
        split: one of ``SPLITS``; different splits never share an object.
        categories: the classes, in label order.
        yaw: "canonical" or "random" (see ``scan_variants``).

    Returns:
        A StandinSet of ``len(categories) * per_category`` clouds, category-major (object
        i of class c at ``c * per_category + i``), with (n, N) int8 ``masks`` (1 = object
        point, 0 = background; all 1 for obj_only).
    """
    if variant not in SCAN_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid variants: {', '.join(SCAN_VARIANTS)}")
    return scan_variants((variant,), per_category, n_points, seed, split, categories, yaw)[variant]
