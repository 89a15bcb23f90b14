"""Category recipes: synthetic, part-labelled shapes that stand in for ShapeNet in the demo suite.

The demo suite runs the whole pipeline without downloading any dataset, so it needs a
corpus of meshes that look enough like ShapeNet objects for rendering, sampling and
pre-training to be meaningful. Each shape is assembled from a handful of primitives
(``picat.demo.primitives``: boxes, cylinders, frusta, ellipsoids, deformed boxes, surfaces
of revolution) with random proportions, and every face remembers which part it came from,
so later stand-ins (ModelNet40 classification, ScanObjectNN partial scans, ShapeNetPart
segmentation, S3DIS rooms) can reuse the same generator. The conventions (Y up, front +Z,
metres) are ``picat.demo.part_mesh``'s.

The demo's 13 ``CATEGORIES`` are easy to tell apart (random-init features already separate
them); the 12 ``EXTRA_CATEGORIES`` (recipes after ``_guitar``) share parts and proportions
with them and with each other, for a harder classification set over ``ALL_CATEGORIES``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from picat.demo.part_mesh import ALL_CATEGORIES, CATEGORIES, PartMesh
from picat.demo.primitives import (
    SECTIONS_LARGE,
    Builder,
    Piece,
    box,
    box_between,
    cylinder,
    ellipsoid,
    frustum,
    hexahedron,
    lathe,
    panel,
    rot_y,
    scale_piece,
    transform_piece,
    tube,
)

# ---------------------------------------------------------------------------------------
# Categories. Each generator draws its proportions from ``rng`` in a fixed order, so a
# (category, seed) pair always gives the same mesh.


def _table(rng: np.random.Generator, b: Builder) -> None:
    height = rng.uniform(0.45, 0.8)
    thick = rng.uniform(0.02, 0.06)
    style = rng.choice(["four", "three", "pedestal"], p=[0.55, 0.2, 0.25])
    round_top = style == "three" or (style == "pedestal" and rng.random() < 0.6)
    top_y = height - thick
    if round_top:
        radius = rng.uniform(0.35, 0.65)
        b.add("top", cylinder((0, top_y, 0), (0, height, 0), radius, SECTIONS_LARGE))
        half_w = half_d = radius
    else:
        half_w = rng.uniform(0.4, 0.9)
        half_d = rng.uniform(0.28, 0.48) * min(1.0, half_w / 0.45)
        b.add("top", box_between((-half_w, top_y, -half_d), (half_w, height, half_d)))
    leg_top = top_y + thick / 2  # legs reach into the top so nothing floats
    if style == "pedestal":
        column = rng.uniform(0.03, 0.08)
        b.add("leg", cylinder((0, 0.01, 0), (0, leg_top, 0), column))
        foot = rng.uniform(0.5, 0.8) * min(half_w, half_d)
        foot_h = rng.uniform(0.02, 0.05)
        if rng.random() < 0.5:
            b.add("leg", cylinder((0, 0, 0), (0, foot_h, 0), foot, SECTIONS_LARGE))
        else:
            n_feet = int(rng.integers(3, 5))
            for i in range(n_feet):
                spoke = box((foot / 2, foot_h / 2, 0), (foot, foot_h, 2 * column * 0.6))
                b.add("leg", transform_piece(spoke, rot_y(2 * math.pi * i / n_feet + math.pi / 2)))
        return
    leg = rng.uniform(0.025, 0.06)
    splay = rng.uniform(0.0, 0.05)
    if style == "three":
        corners = [
            (0.6 * half_w * math.cos(a), 0.6 * half_d * math.sin(a))
            for a in (math.pi / 2 + 2 * math.pi * i / 3 for i in range(3))
        ]
    else:
        inset = rng.uniform(0.02, 0.12)
        xs, zs = half_w - inset - leg, half_d - inset - leg
        corners = [(sx * xs, sz * zs) for sx in (-1, 1) for sz in (-1, 1)]
    square = style == "four" and rng.random() < 0.5
    for x, z in corners:
        if square:
            b.add("leg", box_between((x - leg, 0, z - leg), (x + leg, leg_top, z + leg)))
        else:
            norm = math.hypot(x, z)
            dx, dz = splay * x / norm, splay * z / norm
            b.add("leg", frustum((x + dx, 0, z + dz), (x, leg_top, z), leg * 0.7, leg))


def _tilted_slab(
    x0: float, x1: float, y0: float, y1: float, z0: float, thick: float, tilt: float, pivot_y: float
) -> Piece:
    """Box-like slab in x [x0, x1], y [y0, y1], z [z0, z0 + thick], leaning back (towards -Z).

    The lean is a shear: a point at height y moves by ``-(y - pivot_y) * tan(tilt)`` in z.
    """
    corners = np.empty((2, 2, 2, 3))
    for i, x in enumerate((x0, x1)):
        for j, y in enumerate((y0, y1)):
            shift = -(y - pivot_y) * math.tan(tilt)
            for k, z in enumerate((z0, z0 + thick)):
                corners[i, j, k] = (x, y, z + shift)
    return hexahedron(corners)


def _chair(rng: np.random.Generator, b: Builder) -> None:
    seat_h = rng.uniform(0.4, 0.5)
    half_w = rng.uniform(0.2, 0.28)
    half_d = rng.uniform(0.2, 0.27)
    seat_t = rng.uniform(0.03, 0.08)
    b.add("seat", box_between((-half_w, seat_h - seat_t, -half_d), (half_w, seat_h, half_d)))

    back_h = rng.uniform(0.3, 0.6)
    back_t = rng.uniform(0.02, 0.06)
    tilt = math.radians(rng.uniform(0.0, 15.0))
    y0, y1, z0 = seat_h - seat_t, seat_h + back_h, -half_d
    if rng.random() < 0.6:
        b.add("back", _tilted_slab(-half_w, half_w, y0, y1, z0, back_t, tilt, y0))
    else:  # two posts, a top rail and vertical slats
        post = rng.uniform(0.025, 0.045)
        rail = rng.uniform(0.05, 0.12)
        for x in (-half_w, half_w - post):
            b.add("back", _tilted_slab(x, x + post, y0, y1, z0, back_t, tilt, y0))
        b.add("back", _tilted_slab(-half_w, half_w, y1 - rail, y1, z0, back_t, tilt, y0))
        n_slats = int(rng.integers(2, 6))
        slat = rng.uniform(0.015, 0.04)
        for x in np.linspace(-half_w + post, half_w - post, n_slats + 2)[1:-1]:
            b.add("back", _tilted_slab(
                x - slat / 2, x + slat / 2, seat_h - 0.01, y1 - rail + 0.01, z0 + back_t * 0.25, back_t * 0.5, tilt, y0
            ))

    swivel = rng.random() < 0.25
    if swivel:
        b.add("leg", cylinder((0, 0.06, 0), (0, seat_h - seat_t / 2, 0), rng.uniform(0.02, 0.035)))
        reach = rng.uniform(0.25, 0.32)
        for i in range(5):
            spoke = box((reach / 2, 0.065, 0), (reach, 0.03, 0.04))
            b.add("leg", transform_piece(spoke, rot_y(2 * math.pi * i / 5 + math.pi / 2)))
            angle = 2 * math.pi * i / 5 + math.pi / 2
            wheel = (reach * 0.92 * math.cos(angle), 0.025, -reach * 0.92 * math.sin(angle))
            b.add("leg", ellipsoid(wheel, (0.025, 0.025, 0.025), subdivisions=1))
    else:
        leg = rng.uniform(0.015, 0.035)
        round_legs = rng.random() < 0.5
        for sx in (-1, 1):
            for sz in (-1, 1):
                x, z = sx * (half_w - leg), sz * (half_d - leg)
                top = seat_h - seat_t / 2
                if round_legs:
                    b.add("leg", cylinder((x, 0, z), (x, top, z), leg))
                else:
                    b.add("leg", box_between((x - leg, 0, z - leg), (x + leg, top, z + leg)))

    if rng.random() < (0.7 if swivel else 0.35):
        arm_h = rng.uniform(0.18, 0.26)
        arm_w = rng.uniform(0.03, 0.07)
        arm_t = rng.uniform(0.02, 0.04)
        front = half_d - rng.uniform(0.0, 0.06)
        for sx in (-1, 1):
            x0 = sx * half_w - (arm_w if sx > 0 else 0.0)
            b.add("arm", box_between((x0, seat_h + arm_h - arm_t, -half_d), (x0 + arm_w, seat_h + arm_h, front)))
            b.add("arm", box_between(
                (x0 + 0.15 * arm_w, seat_h - seat_t / 2, front - 0.05),
                (x0 + 0.85 * arm_w, seat_h + arm_h - arm_t / 2, front - 0.02),
            ))


def _lamp(rng: np.random.Generator, b: Builder) -> None:
    kind = rng.choice(["table", "floor", "desk"], p=[0.4, 0.3, 0.3])
    scale = 1.6 if kind == "floor" else 1.0
    base_r = rng.uniform(0.07, 0.13) * scale
    base_h = rng.uniform(0.015, 0.04)
    if rng.random() < 0.7:
        b.add("base", cylinder((0, 0, 0), (0, base_h, 0), base_r, SECTIONS_LARGE))
    else:
        b.add("base", box((0, base_h / 2, 0), (1.8 * base_r, base_h, 1.8 * base_r)))
    stem_r = rng.uniform(0.007, 0.018) * scale

    if kind == "desk":
        lower = rng.uniform(0.25, 0.4)
        upper = rng.uniform(0.25, 0.4)
        back = math.radians(rng.uniform(5.0, 30.0))
        forward = math.radians(rng.uniform(-20.0, 30.0))  # upper arm elevation
        elbow = np.array([0.0, base_h + lower * math.cos(back), -lower * math.sin(back)])
        head = elbow + upper * np.array([0.0, math.sin(forward), math.cos(forward)])
        b.add("stem", cylinder((0, base_h / 2, 0), elbow, stem_r))
        b.add("stem", cylinder(elbow, head, stem_r))
        b.add("stem", ellipsoid(elbow, (1.8 * stem_r,) * 3, subdivisions=1))
        # The shade hangs from the head, opening forward and down.
        droop = math.radians(rng.uniform(30.0, 80.0))
        direction = np.array([0.0, -math.sin(droop), math.cos(droop)])
        length = rng.uniform(0.1, 0.18)
        mouth = rng.uniform(0.05, 0.1)
        b.add("shade", frustum(
            head - 0.2 * length * direction, head + length * direction, rng.uniform(0.015, 0.03), mouth
        ))
        return

    stem_top = rng.uniform(0.3, 0.5) * (3.4 if kind == "floor" else 1.0)
    if kind == "table" and rng.random() < 0.4:  # a vase-shaped body below a short stem
        body_h = rng.uniform(0.35, 0.6) * stem_top
        body_r = rng.uniform(0.5, 0.9) * base_r
        b.add("stem", ellipsoid((0, base_h + body_h / 2, 0), (body_r, body_h / 2, body_r)))
    b.add("stem", cylinder((0, base_h / 2, 0), (0, stem_top, 0), stem_r))
    shade_h = rng.uniform(0.15, 0.3) * (1.2 if kind == "floor" else 1.0)
    r_bottom = rng.uniform(0.1, 0.2) * (1.2 if kind == "floor" else 1.0)
    r_top = r_bottom * (1.0 if rng.random() < 0.3 else rng.uniform(0.4, 0.85))
    shade_y = stem_top - rng.uniform(0.3, 0.7) * shade_h
    b.add("shade", frustum((0, shade_y, 0), (0, shade_y + shade_h, 0), r_bottom, r_top, SECTIONS_LARGE))


def _arc_tube(points: np.ndarray, radius: float) -> list[Piece]:
    """A bent rod through the (N, 3) points: cylinders between them and balls at the joints."""
    pieces = [cylinder(points[i], points[i + 1], radius, 12) for i in range(len(points) - 1)]
    pieces += [ellipsoid(p, (radius, radius, radius), subdivisions=1) for p in points[1:-1]]
    return pieces


def _mug(rng: np.random.Generator, b: Builder) -> None:
    radius = rng.uniform(0.035, 0.055)
    height = rng.uniform(0.07, 0.13)
    wall = rng.uniform(0.004, 0.008)
    b.add("body", tube((0, 0, 0), (0, height, 0), radius - wall, radius))
    b.add("body", cylinder((0, 0, 0), (0, wall * 1.5, 0), radius - wall / 2, SECTIONS_LARGE))
    # A D-shaped or round handle on the +X side, from near the rim down to near the foot.
    reach = rng.uniform(0.02, 0.04)
    top = height * rng.uniform(0.75, 0.9)
    bottom = height * rng.uniform(0.15, 0.35)
    rod = rng.uniform(0.005, 0.009)
    squareness = rng.uniform(0.0, 0.6)  # 0: elliptical arc, towards 1: a squarer D
    angles = np.linspace(-math.pi / 2, math.pi / 2, 9)
    x = np.sign(np.cos(angles)) * np.abs(np.cos(angles)) ** (1 - squareness)
    y = np.sign(np.sin(angles)) * np.abs(np.sin(angles)) ** (1 - squareness)
    points = np.stack(
        [radius - wall / 2 + reach * x, (top + bottom) / 2 + (top - bottom) / 2 * y, np.zeros_like(x)], axis=1
    )
    for piece in _arc_tube(points, rod):
        b.add("handle", piece)


def _airplane(rng: np.random.Generator, b: Builder) -> None:
    length = rng.uniform(20.0, 45.0)
    radius = length * rng.uniform(0.035, 0.06)
    # Fuselage along Z: rounded nose at +Z, tapered tail cone raised towards the top.
    nose_len = radius * rng.uniform(1.2, 2.5)
    tail_len = length * rng.uniform(0.15, 0.25)
    z_nose, z_tail = length / 2, -length / 2
    body0, body1 = z_tail + tail_len, z_nose - nose_len
    b.add("fuselage", cylinder((0, 0, body0), (0, 0, body1), radius))
    b.add("fuselage", ellipsoid((0, 0, body1), (radius, radius, nose_len)))
    tail_tip = np.array([0.0, radius * 0.5, z_tail])
    b.add("fuselage", frustum((0, 0, body0), tail_tip, radius, radius * 0.25))

    # Main wings: tapered, swept, with dihedral; low or high mounted.
    half_span = length * rng.uniform(0.4, 0.55)
    root_chord = length * rng.uniform(0.14, 0.24)
    tip_chord = root_chord * rng.uniform(0.25, 0.6)
    sweep = math.radians(rng.uniform(0.0, 35.0))
    dihedral = math.radians(rng.uniform(-2.0, 7.0))
    wing_y = radius * (rng.uniform(-0.6, -0.3) if rng.random() < 0.75 else rng.uniform(0.4, 0.7))
    root_z = length * rng.uniform(-0.05, 0.12)  # centre of the root chord
    root_t = root_chord * rng.uniform(0.08, 0.14)

    def wing_point(s: float, side: float) -> np.ndarray:
        """(3,) centre of the wing's chord at span fraction s on side +-1.

        The sweep is that of the leading edge; the taper moves the chord centre forwards.
        """
        leading = root_z + root_chord / 2 - s * half_span * math.tan(sweep)
        chord = root_chord + s * (tip_chord - root_chord)
        return np.array([side * s * half_span, wing_y + s * half_span * math.tan(dihedral), leading - chord / 2])

    for side in (-1.0, 1.0):
        b.add("wing", panel(
            wing_point(0.0, side), wing_point(1.0, side), (0, 0, 1), (root_chord, tip_chord), (root_t, root_t * 0.4)
        ))

    # Tail: horizontal stabilisers plus a vertical fin (a T-tail puts them on top).
    fin_h = radius * rng.uniform(1.5, 3.0)
    fin_chord = tail_len * rng.uniform(0.6, 0.9)
    fin_sweep = math.radians(rng.uniform(20.0, 45.0))
    fin_root = np.array([0.0, radius * 0.3, z_tail + fin_chord / 2 + 0.05 * length])
    fin_tip = fin_root + np.array([0.0, fin_h, -fin_h * math.tan(fin_sweep)])
    fin_t = fin_chord * 0.1
    b.add("tail", panel(fin_tip, fin_root, (0, 0, 1), (fin_chord * 0.5, fin_chord), (fin_t * 0.5, fin_t)))
    t_tail = rng.random() < 0.2
    stab_root = (
        fin_tip + np.array([0.0, -0.05 * fin_h, 0.0]) if t_tail else fin_root + np.array([0.0, 0.1 * radius, 0.0])
    )
    stab_span = half_span * rng.uniform(0.25, 0.4)
    stab_chord = fin_chord * (0.5 if t_tail else 0.8)
    for side in (-1.0, 1.0):
        tip = stab_root + np.array([side * stab_span, 0.0, -stab_span * math.tan(fin_sweep) * 0.6])
        b.add("tail", panel(stab_root, tip, (0, 0, 1), (stab_chord, stab_chord * 0.5), (fin_t * 0.6, fin_t * 0.6)))

    # Engines: nacelles hanging under the wings (2 or 4), or a pair on the rear fuselage.
    nacelle_r = radius * rng.uniform(0.35, 0.55)
    nacelle_len = root_chord * rng.uniform(0.5, 0.8)
    if rng.random() < 0.2:
        for side in (-1.0, 1.0):
            centre = np.array([side * radius * 1.3, radius * 0.4, body0 + nacelle_len * 0.2])
            b.add("engine", cylinder(centre - (0, 0, nacelle_len / 2), centre + (0, 0, nacelle_len / 2), nacelle_r))
            b.add("engine", box_between(
                (min(0.0, side * radius * 1.3), radius * 0.3, centre[2] - nacelle_len * 0.25),
                (max(0.0, side * radius * 1.3), radius * 0.5, centre[2] + nacelle_len * 0.25),
            ))
        return
    fractions = (0.35,) if rng.random() < 0.6 else (0.3, 0.6)
    for s in fractions:
        for side in (-1.0, 1.0):
            point = wing_point(s, side)
            chord = root_chord + s * (tip_chord - root_chord)
            centre = point + np.array([0.0, -nacelle_r * 1.1, chord / 2 + nacelle_len * 0.1])
            b.add("engine", cylinder(centre - (0, 0, nacelle_len / 2), centre + (0, 0, nacelle_len / 2), nacelle_r))
            pylon = box_between(
                (point[0] - nacelle_r * 0.1, centre[1], centre[2] - nacelle_len * 0.4),
                (point[0] + nacelle_r * 0.1, point[1] + root_t * 0.2, centre[2] + nacelle_len * 0.1),
            )
            b.add("engine", pylon)


def _bottle(rng: np.random.Generator, b: Builder) -> None:
    radius = rng.uniform(0.03, 0.05)
    body_h = rng.uniform(0.12, 0.25)
    neck_r = radius * rng.uniform(0.3, 0.45)
    shoulder_h = rng.uniform(0.02, 0.07)
    neck_h = rng.uniform(0.02, 0.09)
    cap_h = rng.uniform(0.01, 0.03)
    if rng.random() < 0.25:  # square bottle
        b.add("body", box((0, body_h / 2, 0), (2 * radius, body_h, 2 * radius)))
        shoulder_r0 = radius * math.sqrt(2)  # 4-sided frustum whose base covers the square
        shoulder = frustum((0, body_h, 0), (0, body_h + shoulder_h, 0), shoulder_r0, neck_r * math.sqrt(2), 4)
        b.add("neck", transform_piece(shoulder, rot_y(math.pi / 4)))
    else:
        b.add("body", cylinder((0, 0, 0), (0, body_h, 0), radius, SECTIONS_LARGE))
        b.add("neck", frustum((0, body_h, 0), (0, body_h + shoulder_h, 0), radius, neck_r, SECTIONS_LARGE))
    neck_top = body_h + shoulder_h + neck_h
    b.add("neck", cylinder((0, body_h + shoulder_h * 0.9, 0), (0, neck_top, 0), neck_r))
    b.add("cap", cylinder((0, neck_top - 0.25 * cap_h, 0), (0, neck_top + cap_h, 0), neck_r * rng.uniform(1.05, 1.25)))


def _car(rng: np.random.Generator, b: Builder) -> None:
    length = rng.uniform(3.6, 5.0)
    half_w = rng.uniform(0.8, 1.0)
    wheel_r = rng.uniform(0.28, 0.4)
    clearance = wheel_r * rng.uniform(0.45, 0.8)
    body_h = rng.uniform(0.45, 0.8)
    nose = rng.uniform(0.15, 0.5)  # how far the bonnet edge is set back from the bumper
    tail = rng.uniform(0.05, 0.3)
    y0, y1 = clearance, clearance + body_h
    corners = np.empty((2, 2, 2, 3))
    for i, x in enumerate((-half_w, half_w)):
        corners[i, 0, 0], corners[i, 0, 1] = (x, y0, -length / 2 + 0.1), (x, y0, length / 2 - 0.1)
        corners[i, 1, 0], corners[i, 1, 1] = (x, y1, -length / 2 + tail), (x, y1, length / 2 - nose)
    b.add("body", hexahedron(corners))

    # Cabin: sedan (middle), hatchback (to the rear) or pickup (front half only).
    style = rng.choice(["sedan", "hatch", "pickup"], p=[0.5, 0.35, 0.15])
    cabin_h = rng.uniform(0.35, 0.6)
    if style == "sedan":
        back, front = -length * rng.uniform(0.2, 0.3), length * rng.uniform(0.12, 0.22)
    elif style == "hatch":
        back, front = -length / 2 + tail + 0.05, length * rng.uniform(0.1, 0.2)
    else:
        back, front = -length * rng.uniform(0.0, 0.1), length * rng.uniform(0.15, 0.25)
    # Fractions of the cabin's footprint taken by the sloped windscreen and rear window;
    # together at most 0.75, so the roof never folds over.
    cabin_len = front - back
    windscreen = cabin_len * rng.uniform(0.25, 0.4)
    rear_slope = cabin_len * (rng.uniform(0.2, 0.35) if style == "sedan" else rng.uniform(0.03, 0.12))
    inset = rng.uniform(0.05, 0.15)
    corners = np.empty((2, 2, 2, 3))
    for i, sx in enumerate((-1.0, 1.0)):
        corners[i, 0, 0] = (sx * (half_w - 0.02), y1 - 0.02, back)
        corners[i, 0, 1] = (sx * (half_w - 0.02), y1 - 0.02, front)
        corners[i, 1, 0] = (sx * (half_w - inset), y1 + cabin_h, back + rear_slope)
        corners[i, 1, 1] = (sx * (half_w - inset), y1 + cabin_h, front - windscreen)
    b.add("cabin", hexahedron(corners))

    wheelbase = length * rng.uniform(0.55, 0.65)
    tyre = rng.uniform(0.18, 0.3)
    for sx in (-1.0, 1.0):
        for sz in (-1.0, 1.0):
            # Tyres stick out of the block-shaped body a little, so they show from the side.
            x, z = sx * (half_w - tyre * 0.3), sz * wheelbase / 2
            b.add("wheel", cylinder((x - tyre / 2, wheel_r, z), (x + tyre / 2, wheel_r, z), wheel_r))


def _shelf(rng: np.random.Generator, b: Builder) -> None:
    half_w = rng.uniform(0.3, 0.6)
    height = rng.uniform(0.8, 2.0)
    depth = rng.uniform(0.25, 0.45)
    t = rng.uniform(0.015, 0.03)
    plinth = rng.uniform(0.0, 0.1)
    d0, d1 = -depth / 2, depth / 2
    for x in (-half_w, half_w - t):
        b.add("frame", box_between((x, 0, d0), (x + t, height, d1)))
    b.add("frame", box_between((-half_w, height - t, d0), (half_w, height, d1)))
    b.add("frame", box_between((-half_w + t, plinth, d0), (half_w - t, plinth + t, d1)))
    if plinth > 0.03:
        b.add("frame", box_between((-half_w + t, 0, d1 - 2 * t), (half_w - t, plinth, d1 - t)))
    if rng.random() < 0.7:
        b.add("frame", box_between((-half_w, 0, d0), (half_w, height, d0 + t * 0.5)))
    n_boards = int(rng.integers(1, max(2, int(height / 0.35))))
    for y in np.linspace(plinth, height - t, n_boards + 2)[1:-1]:
        b.add("board", box_between((-half_w + t, y, d0 + t * 0.5), (half_w - t, y + t, d1 - rng.uniform(0.0, 0.03))))


def _bed(rng: np.random.Generator, b: Builder) -> None:
    length = rng.uniform(1.9, 2.2)
    half_w = rng.uniform(0.45, 1.0)
    frame_h = rng.uniform(0.2, 0.4)
    legs = rng.random() < 0.5
    z0, z1 = -length / 2, length / 2
    if legs:
        leg_h = frame_h * rng.uniform(0.4, 0.7)
        leg = rng.uniform(0.03, 0.06)
        for sx in (-1.0, 1.0):
            for sz in (-1.0, 1.0):
                x, z = sx * (half_w - leg), sz * (length / 2 - leg)
                b.add("frame", box_between((x - leg, 0, z - leg), (x + leg, leg_h + 0.01, z + leg)))
        b.add("frame", box_between((-half_w, leg_h, z0), (half_w, frame_h, z1)))
    else:
        b.add("frame", box_between((-half_w, 0, z0), (half_w, frame_h, z1)))
    mattress_h = rng.uniform(0.15, 0.3)
    inset = rng.uniform(0.0, 0.05)
    mattress_top = frame_h + mattress_h
    b.add("mattress", box_between(
        (-half_w + inset, frame_h - 0.01, z0 + inset), (half_w - inset, mattress_top, z1 - inset)
    ))
    head_h = rng.uniform(0.3, 0.9)
    head_t = rng.uniform(0.04, 0.1)
    b.add("headboard", box_between((-half_w - 0.02, 0, z0 - head_t), (half_w + 0.02, mattress_top + head_h, z0 + 0.01)))
    if rng.random() < 0.4:  # footboard, part of the frame
        b.add("frame", box_between(
            (-half_w - 0.02, 0, z1 - 0.01), (half_w + 0.02, mattress_top + head_h * rng.uniform(0.1, 0.5), z1 + head_t)
        ))
    n_pillows = 1 if half_w < 0.65 else 2
    pillow_w = (2 * half_w - 0.15) / n_pillows / 2 * rng.uniform(0.8, 0.95)
    pillow_d = rng.uniform(0.15, 0.25)
    pillow_h = rng.uniform(0.05, 0.09)
    for x in np.linspace(-half_w, half_w, 2 * n_pillows + 1)[1::2]:
        centre = (x, mattress_top + pillow_h * 0.7, z0 + inset + pillow_d + 0.05)
        b.add("pillow", ellipsoid(centre, (pillow_w, pillow_h, pillow_d)))


def _sofa(rng: np.random.Generator, b: Builder) -> None:
    half_w = rng.uniform(0.8, 1.3)
    depth = rng.uniform(0.8, 1.0)
    leg_h = rng.uniform(0.0, 0.15)
    base_top = rng.uniform(0.25, 0.4)
    back_top = rng.uniform(0.7, 0.95)
    back_t = rng.uniform(0.15, 0.25)
    arm_w = rng.uniform(0.1, 0.25)
    arm_top = rng.uniform(0.5, 0.7)
    z0, z1 = -depth / 2, depth / 2
    if leg_h > 0.03:
        leg = 0.03
        for sx in (-1.0, 1.0):
            for sz in (-1.0, 1.0):
                x, z = sx * (half_w - 0.06), sz * (depth / 2 - 0.06)
                b.add("base", box_between((x - leg, 0, z - leg), (x + leg, leg_h + 0.01, z + leg)))
    else:
        leg_h = 0.0
    b.add("base", box_between((-half_w + arm_w, leg_h, z0), (half_w - arm_w, base_top, z1)))
    tilt = math.radians(rng.uniform(0.0, 12.0))
    b.add("back", _tilted_slab(-half_w, half_w, leg_h, back_top, z0, back_t, tilt, base_top))
    rounded = rng.random() < 0.4
    for sx in (-1.0, 1.0):
        x0 = sx * half_w - (arm_w if sx > 0 else 0.0)
        b.add("arm", box_between((x0, leg_h, z0), (x0 + arm_w, arm_top, z1)))
        if rounded:
            b.add("arm", cylinder((x0 + arm_w / 2, arm_top, z0), (x0 + arm_w / 2, arm_top, z1), arm_w * 0.6))
    n_cushions = int(rng.integers(1, 4))
    cushion_h = rng.uniform(0.08, 0.15)
    inner = 2 * (half_w - arm_w)
    edges = np.linspace(-half_w + arm_w, half_w - arm_w, n_cushions + 1)
    gap = 0.01 * inner
    for a, c in zip(edges[:-1], edges[1:], strict=True):
        b.add("cushion", box_between(
            (a + gap, base_top - 0.01, z0 + back_t), (c - gap, base_top + cushion_h, z1 + 0.02)
        ))
        if rng.random() < 0.5:  # loose back cushion leaning on the back
            b.add("cushion", _tilted_slab(
                a + gap, c - gap, base_top + cushion_h - 0.01, back_top - 0.05, z0 + back_t - 0.02, 0.12, tilt, base_top
            ))


def _bench(rng: np.random.Generator, b: Builder) -> None:
    half_w = rng.uniform(0.6, 1.0)
    half_d = rng.uniform(0.15, 0.23)
    seat_h = rng.uniform(0.4, 0.5)
    seat_t = rng.uniform(0.03, 0.06)
    if rng.random() < 0.5:  # slats along the length
        n_slats = int(rng.integers(3, 6))
        edges = np.linspace(-half_d, half_d, n_slats + 1)
        gap = 0.1 * (edges[1] - edges[0])
        for a, c in zip(edges[:-1], edges[1:], strict=True):
            b.add("seat", box_between((-half_w, seat_h - seat_t, a + gap / 2), (half_w, seat_h, c - gap / 2)))
    else:
        b.add("seat", box_between((-half_w, seat_h - seat_t, -half_d), (half_w, seat_h, half_d)))
    inset = rng.uniform(0.05, 0.2)
    leg_t = rng.uniform(0.03, 0.06)
    panel_legs = rng.random() < 0.5
    for sx in (-1.0, 1.0):
        x = sx * (half_w - inset)
        if panel_legs:
            b.add("leg", box_between((x - leg_t / 2, 0, -half_d), (x + leg_t / 2, seat_h - seat_t / 2, half_d)))
        else:
            for sz in (-1.0, 1.0):
                z = sz * (half_d - leg_t)
                b.add("leg", box_between(
                    (x - leg_t / 2, 0, z - leg_t / 2), (x + leg_t / 2, seat_h - seat_t / 2, z + leg_t / 2)
                ))
    if rng.random() < 0.5:
        back_h = rng.uniform(0.25, 0.45)
        tilt = math.radians(rng.uniform(5.0, 15.0))
        y0 = seat_h + rng.uniform(0.03, 0.1)
        b.add("back", _tilted_slab(-half_w, half_w, y0, seat_h + back_h, -half_d, 0.03, tilt, seat_h))
        for sx in (-1.0, 1.0):
            x = sx * (half_w - inset)
            b.add("back", _tilted_slab(
                x - leg_t / 2, x + leg_t / 2, seat_h - seat_t, seat_h + back_h, -half_d - 0.01, 0.04, tilt, seat_h
            ))


def _monitor(rng: np.random.Generator, b: Builder) -> None:
    width = rng.uniform(0.45, 0.75)
    aspect = rng.choice([16 / 9, 16 / 10, 4 / 3])
    height = width / aspect
    thick = rng.uniform(0.015, 0.05)
    lift = rng.uniform(0.06, 0.2)
    tilt = math.radians(rng.uniform(-5.0, 10.0))
    base_t = rng.uniform(0.01, 0.03)
    base_d = rng.uniform(0.15, 0.25)
    if rng.random() < 0.6:
        b.add("base", box_between(
            (-rng.uniform(0.1, 0.2), 0, -base_d / 2), (rng.uniform(0.1, 0.2), base_t, base_d / 2)
        ))
    else:
        b.add("base", cylinder((0, 0, 0), (0, base_t, 0), base_d * 0.6, SECTIONS_LARGE))
    screen_y0 = base_t + lift
    screen_z = rng.uniform(-0.02, 0.03)
    b.add("screen", _tilted_slab(
        -width / 2, width / 2, screen_y0, screen_y0 + height, screen_z, thick, tilt, screen_y0 + height / 2
    ))
    if rng.random() < 0.3:  # a bulky back housing
        b.add("screen", _tilted_slab(
            -width / 3, width / 3, screen_y0 + height * 0.2, screen_y0 + height * 0.8, screen_z - thick, thick * 1.01,
            tilt, screen_y0 + height / 2
        ))
    neck_w = rng.uniform(0.03, 0.08)
    # The neck rises behind the screen and reaches into it (at mid-height the tilt shifts nothing).
    b.add("stand", box_between(
        (-neck_w / 2, base_t - 0.005, screen_z - 0.03), (neck_w / 2, screen_y0 + height * 0.5, screen_z + thick * 0.3)
    ))


def _guitar(rng: np.random.Generator, b: Builder) -> None:
    # Standing upright on its lower bout, strings facing +Z.
    lower = rng.uniform(0.17, 0.21)  # half-width of the lower bout
    upper = lower * rng.uniform(0.7, 0.85)
    body_t = rng.uniform(0.04, 0.11)
    lower_h = lower * rng.uniform(1.0, 1.2)
    upper_h = upper * rng.uniform(0.9, 1.1)
    b.add("body", ellipsoid((0, lower_h, 0), (lower, lower_h, body_t / 2)))
    upper_y = 2 * lower_h + upper_h * rng.uniform(0.2, 0.6)
    b.add("body", ellipsoid((0, upper_y, 0), (upper, upper_h, body_t / 2)))
    neck_len = rng.uniform(0.4, 0.5)
    neck_w = rng.uniform(0.045, 0.06)
    neck_y0 = upper_y + upper_h * 0.5
    neck_z = body_t / 2 - 0.01
    b.add("neck", box_between(
        (-neck_w / 2, neck_y0, neck_z - 0.025), (neck_w / 2, upper_y + upper_h + neck_len, neck_z)
    ))
    head_len = rng.uniform(0.14, 0.2)
    angle = math.radians(rng.uniform(0.0, 15.0))  # headstock tilted back
    head_y0 = upper_y + upper_h + neck_len - 0.01
    b.add("head", _tilted_slab(
        -neck_w * 0.7, neck_w * 0.7, head_y0, head_y0 + head_len, neck_z - 0.02, 0.018, angle, head_y0
    ))


# ---------------------------------------------------------------------------------------
# Extra categories (EXTRA_CATEGORIES): shapes that share parts and proportions with the
# demo's categories and with each other, so that telling them apart takes more than a
# silhouette (see picat.demo.part_mesh). Each draws from ``rng`` in a fixed order, as above.


def _handle(b: Builder, part: str, style: str, x: float, y: float, z: float, size: float, vertical: bool) -> None:
    """A knob or a bar handle on a front whose surface is at ``z`` (facing +Z), centred at (x, y)."""
    if style == "knob":
        b.add(part, cylinder((x, y, z - 0.003), (x, y, z + 0.025), max(0.008, 0.12 * size), 8))
    elif style == "bar":
        length = float(np.clip(size, 0.06, 0.6))
        along = np.array([0.0, length / 2, 0.0]) if vertical else np.array([length / 2, 0.0, 0.0])
        centre = np.array([x, y, z + 0.02])
        b.add(part, box(centre, 2 * np.abs(along) + (0.012, 0.012, 0.012)))
        for end in (-0.4, 0.4):  # two standoffs reaching back into the front
            foot = centre + end * 2 * along
            b.add(part, box_between(
                (foot[0] - 0.006, foot[1] - 0.006, z - 0.003), (foot[0] + 0.006, foot[1] + 0.006, z + 0.02)
            ))


def _furniture_base(rng: np.random.Generator, b: Builder, part: str, half_w: float, depth: float,
                    p_legs: float, leg_range: tuple[float, float]) -> float:
    """Legs, a recessed plinth or nothing under a box-shaped carcass; returns the carcass's bottom height."""
    kind = rng.choice(["legs", "plinth", "none"], p=[p_legs, (1 - p_legs) * 0.6, (1 - p_legs) * 0.4])
    if kind == "legs":
        height = rng.uniform(*leg_range)
        leg = rng.uniform(0.015, 0.03)
        tapered = rng.random() < 0.5
        for sx in (-1.0, 1.0):
            for sz in (-1.0, 1.0):
                x, z = sx * (half_w - leg - 0.01), sz * (depth / 2 - leg - 0.01)
                if tapered:
                    b.add(part, frustum((x, 0, z), (x, height + 0.01, z), leg * 0.6, leg, 12))
                else:
                    b.add(part, box_between((x - leg, 0, z - leg), (x + leg, height + 0.01, z + leg)))
        return height
    if kind == "plinth":
        height = rng.uniform(0.04, 0.12)
        inset = rng.uniform(0.02, 0.06)
        b.add(part, box_between(
            (-half_w + inset, 0, -depth / 2 + inset), (half_w - inset, height + 0.01, depth / 2 - inset)
        ))
        return height
    return 0.0


def _stool(rng: np.random.Generator, b: Builder) -> None:
    height = rng.uniform(0.3, 0.82)  # footstools to bar stools
    seat_t = rng.uniform(0.03, 0.07)
    half = rng.uniform(0.14, 0.28)
    round_seat = rng.random() < 0.6
    top_y = height - seat_t
    if round_seat:
        b.add("seat", cylinder((0, top_y, 0), (0, height, 0), half, SECTIONS_LARGE))
    else:
        b.add("seat", box_between((-half, top_y, -half), (half, height, half)))
    footrest = rng.random() < (0.7 if height > 0.62 else 0.2)
    foot_y = height * rng.uniform(0.25, 0.4)
    rod = rng.uniform(0.008, 0.015)
    if rng.random() < 0.25:  # pedestal: a column on a disc, as a bar stool
        column = rng.uniform(0.02, 0.045)
        b.add("leg", cylinder((0, 0.01, 0), (0, top_y + seat_t / 2, 0), column))
        foot_h = rng.uniform(0.015, 0.04)
        b.add("leg", cylinder((0, 0, 0), (0, foot_h, 0), half * rng.uniform(0.7, 1.0), SECTIONS_LARGE))
        if footrest:
            ring = half * rng.uniform(0.6, 0.9)
            b.add("footrest", tube((0, foot_y - rod, 0), (0, foot_y + rod, 0), ring - rod, ring + rod))
            for i in range(3):
                spoke = box(((ring + column) / 2, foot_y, 0), (ring - column + rod, rod, rod * 1.5))
                b.add("footrest", transform_piece(spoke, rot_y(2 * math.pi * i / 3)))
        return
    n_legs = 3 if rng.random() < 0.35 else 4
    leg = rng.uniform(0.014, 0.03)
    splay = rng.uniform(0.0, 0.09)
    reach = (half - 1.5 * leg) * (math.sqrt(2) * 0.92 if not round_seat and n_legs == 4 else 0.88)
    start = math.pi / 4 if n_legs == 4 else math.pi / 2
    angles = [start + 2 * math.pi * i / n_legs for i in range(n_legs)]
    feet = []
    for a in angles:
        top = np.array([reach * math.cos(a), top_y + seat_t / 2, reach * math.sin(a)])
        foot = np.array([(reach + splay) * math.cos(a), 0.0, (reach + splay) * math.sin(a)])
        b.add("leg", frustum(foot, top, leg * 0.75, leg, 12))
        feet.append((foot, top))
    if footrest:
        # Where the legs pass foot height; a ring around them or straight rungs between them.
        s = foot_y / (top_y + seat_t / 2)
        points = [foot + s * (top - foot) for foot, top in feet]
        if rng.random() < 0.5:
            ring = float(np.hypot(points[0][0], points[0][2]))
            b.add("footrest", tube((0, foot_y - rod, 0), (0, foot_y + rod, 0), ring - rod, ring + rod))
        else:
            for i in range(n_legs):
                b.add("footrest", cylinder(points[i], points[(i + 1) % n_legs], rod, 8))


def _drawer_stack(rng: np.random.Generator, b: Builder, part: str, handle_part: str, handle: str,
                  x0: float, x1: float, y0: float, y1: float, z: float, n: int, gap: float = 0.005) -> None:
    """``n`` drawer fronts stacked in x [x0, x1], y [y0, y1], standing out of the front face z."""
    thick = rng.uniform(0.012, 0.022)
    edges = np.linspace(y0, y1, n + 1)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        b.add(part, box_between((x0 + gap, lo + gap, z - 0.005), (x1 - gap, hi - gap, z + thick)))
        if handle != "none":
            _handle(b, handle_part, handle, (x0 + x1) / 2, (lo + hi) / 2 + 0.25 * (hi - lo - 2 * gap) * (n == 1),
                    z + thick, 0.35 * (x1 - x0), vertical=False)


def _desk(rng: np.random.Generator, b: Builder) -> None:
    half_w = rng.uniform(0.5, 0.85)
    depth = rng.uniform(0.5, 0.75)
    height = rng.uniform(0.7, 0.78)
    thick = rng.uniform(0.02, 0.045)
    d0, d1 = -depth / 2, depth / 2
    top_y = height - thick
    overhang = rng.uniform(0.0, 0.04)
    b.add("top", box_between((-half_w - overhang, top_y, d0), (half_w + overhang, height, d1 + overhang)))
    style = rng.choice(["panels", "legs", "pedestal", "double"], p=[0.3, 0.25, 0.3, 0.15])
    handle = rng.choice(["knob", "bar"])
    panel_t = rng.uniform(0.02, 0.045)
    reach = top_y + thick / 2  # supports reach into the top

    def side_panel(x: float) -> None:
        b.add("leg", box_between((x - panel_t / 2, 0, d0 + 0.01), (x + panel_t / 2, reach, d1 - 0.02)))

    def legs_at(x: float) -> None:
        leg = rng.uniform(0.02, 0.035)
        for z in (d0 + leg + 0.02, d1 - leg - 0.02):
            b.add("leg", box_between((x - leg, 0, z - leg), (x + leg, reach, z + leg)))

    def pedestal(x0: float, x1: float) -> None:
        b.add("leg", box_between((x0, 0, d0 + 0.02), (x1, reach, d1 - 0.03)))
        n = int(rng.integers(2, 5))
        _drawer_stack(rng, b, "drawer", "drawer", handle, x0, x1, rng.uniform(0.0, 0.08), top_y - 0.01, d1 - 0.03, n)

    def apron_drawer(x0: float, x1: float) -> None:
        h = rng.uniform(0.08, 0.14)
        b.add("drawer", box_between((x0, top_y - h, d0 + 0.05), (x1, top_y + 0.005, d1 - 0.03)))
        _drawer_stack(rng, b, "drawer", "drawer", handle, x0, x1, top_y - h, top_y, d1 - 0.03, 1)

    width = rng.uniform(0.3, 0.45)
    if style == "panels":
        for x in (-half_w + panel_t / 2 + 0.01, half_w - panel_t / 2 - 0.01):
            side_panel(x)
        if rng.random() < 0.4:
            apron_drawer(-0.3 * half_w, 0.3 * half_w)
    elif style == "legs":
        for x in (-half_w + 0.05, half_w - 0.05):
            legs_at(x)
        if rng.random() < 0.7:
            apron_drawer(-rng.uniform(0.2, 0.5) * half_w, rng.uniform(0.2, 0.5) * half_w)
    elif style == "pedestal":
        side = 1.0 if rng.random() < 0.5 else -1.0
        outer = side * (half_w - 0.01)
        pedestal(min(outer, outer - side * width), max(outer, outer - side * width))
        if rng.random() < 0.5:
            side_panel(-side * (half_w - panel_t / 2 - 0.01))
        else:
            legs_at(-side * (half_w - 0.05))
    else:
        pedestal(-half_w + 0.01, -half_w + 0.01 + width)
        pedestal(half_w - 0.01 - width, half_w - 0.01)
        if rng.random() < 0.5:
            apron_drawer(-half_w + 0.03 + width, half_w - 0.03 - width)
    if style != "legs" and rng.random() < 0.6:  # modesty panel at the back
        low = rng.uniform(0.2, 0.45)
        b.add("leg", box_between((-half_w + 0.03, low, d0 + 0.03), (half_w - 0.03, reach, d0 + 0.03 + panel_t * 0.6)))


def _doors(rng: np.random.Generator, b: Builder, door_part: str, handle_part: str, handle: str,
           x0: float, x1: float, y0: float, y1: float, z: float, n: int, gap: float = 0.004) -> None:
    """``n`` side-by-side doors in x [x0, x1], y [y0, y1] on the front face z, handles at the meeting edges."""
    thick = rng.uniform(0.012, 0.022)
    edges = np.linspace(x0, x1, n + 1)
    handle_y = y0 + (y1 - y0) * (rng.uniform(0.4, 0.6) if y1 - y0 > 1.0 else rng.uniform(0.5, 0.85))
    for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        b.add(door_part, box_between((lo + gap, y0 + gap, z - 0.005), (hi - gap, y1 - gap, z + thick)))
        if handle == "none":
            continue
        # Handles on the edge next to the neighbouring door (a single door: on a random side).
        right = (i < n / 2 - 0.25) if n > 1 else bool(rng.random() < 0.5)
        x = hi - 0.05 if right else lo + 0.05
        _handle(b, handle_part, handle, x, handle_y, z + thick, 0.3 * (y1 - y0), vertical=True)


def _carcass_top(rng: np.random.Generator, b: Builder, part: str, half_w: float, depth: float, y: float) -> float:
    """An optional top slab overhanging the carcass; returns the height reached."""
    if rng.random() < 0.5:
        t = rng.uniform(0.015, 0.04)
        over = rng.uniform(0.005, 0.04)
        b.add(part, box_between(
            (-half_w - over, y - 0.005, -depth / 2), (half_w + over, y + t, depth / 2 + over + 0.02)
        ))
        return y + t
    return y


def _cabinet(rng: np.random.Generator, b: Builder) -> None:
    half_w = rng.uniform(0.22, 0.6)
    height = rng.uniform(0.6, 1.6)
    depth = rng.uniform(0.35, 0.6)
    base = _furniture_base(rng, b, "body", half_w, depth, 0.3, (0.08, 0.2))
    b.add("body", box_between((-half_w, base, -depth / 2), (half_w, height, depth / 2)))
    _carcass_top(rng, b, "body", half_w, depth, height)
    handle = rng.choice(["knob", "bar", "none"], p=[0.45, 0.45, 0.1])
    n_doors = 1 if half_w < 0.3 or rng.random() < 0.15 else 2
    if height - base > 1.1 and rng.random() < 0.7:  # tall: upper and lower doors
        split = base + (height - base) * rng.uniform(0.45, 0.6)
        _doors(rng, b, "door", "handle", handle, -half_w, half_w, base, split, depth / 2, n_doors)
        _doors(rng, b, "door", "handle", handle, -half_w, half_w, split, height, depth / 2, n_doors)
    else:
        _doors(rng, b, "door", "handle", handle, -half_w, half_w, base, height, depth / 2, n_doors)


def _dresser(rng: np.random.Generator, b: Builder) -> None:
    half_w = rng.uniform(0.35, 0.85)
    height = rng.uniform(0.7, 1.35)
    depth = rng.uniform(0.4, 0.55)
    base = _furniture_base(rng, b, "body", half_w, depth, 0.45, (0.06, 0.18))
    b.add("body", box_between((-half_w, base, -depth / 2), (half_w, height, depth / 2)))
    _carcass_top(rng, b, "body", half_w, depth, height)
    handle = rng.choice(["knob", "bar", "none"], p=[0.45, 0.45, 0.1])
    rows = int(min(rng.integers(3, 7), max(3, (height - base) // 0.16)))
    edges = np.linspace(base, height, rows + 1)
    split_top = rng.random() < 0.5
    for r, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
        columns = 2 if (half_w > 0.6 and rng.random() < 0.3) or (split_top and r == rows - 1) else 1
        xs = np.linspace(-half_w, half_w, columns + 1)
        for a, c in zip(xs[:-1], xs[1:], strict=True):
            _drawer_stack(rng, b, "drawer", "handle", handle, a, c, lo, hi, depth / 2, 1)


def _wardrobe(rng: np.random.Generator, b: Builder) -> None:
    half_w = rng.uniform(0.4, 0.9)
    height = rng.uniform(1.6, 2.3)
    depth = rng.uniform(0.5, 0.65)
    base = _furniture_base(rng, b, "body", half_w, depth, 0.25, (0.06, 0.15))
    b.add("body", box_between((-half_w, base, -depth / 2), (half_w, height, depth / 2)))
    if rng.random() < 0.5:  # a crown
        crown = rng.uniform(0.03, 0.08)
        b.add("body", box_between(
            (-half_w - 0.03, height - 0.01, -depth / 2), (half_w + 0.03, height + crown, depth / 2 + 0.04)
        ))
    handle = rng.choice(["knob", "bar", "none"], p=[0.35, 0.55, 0.1])
    n_doors = 2 if half_w < 0.6 else int(rng.integers(2, 4))
    door_y0 = base
    if rng.random() < 0.35:  # a row of drawers under the doors
        door_y0 = base + rng.uniform(0.18, 0.35)
        n_drawers = 1 if half_w < 0.6 else 2
        xs = np.linspace(-half_w, half_w, n_drawers + 1)
        for a, c in zip(xs[:-1], xs[1:], strict=True):
            _drawer_stack(rng, b, "drawer", "handle", handle, a, c, base, door_y0, depth / 2, 1)
    _doors(rng, b, "door", "handle", handle, -half_w, half_w, door_y0, height, depth / 2, n_doors)


def _night_stand(rng: np.random.Generator, b: Builder) -> None:
    half_w = rng.uniform(0.18, 0.32)
    height = rng.uniform(0.45, 0.72)
    depth = rng.uniform(0.3, 0.45)
    base = _furniture_base(rng, b, "leg", half_w, depth, 0.6, (0.06, 0.22))
    handle = rng.choice(["knob", "bar"])
    d0, d1 = -depth / 2, depth / 2
    layout = rng.choice(["drawers", "niche"], p=[0.6, 0.4])
    if layout == "drawers":
        b.add("body", box_between((-half_w, base, d0), (half_w, height, d1)))
        _drawer_stack(rng, b, "drawer", "drawer", handle, -half_w, half_w, base, height, d1, int(rng.integers(1, 4)))
    else:  # a drawer on top of an open niche: the carcass as panels
        t = rng.uniform(0.015, 0.025)
        for x in (-half_w, half_w - t):
            b.add("body", box_between((x, base, d0), (x + t, height, d1)))
        b.add("body", box_between((-half_w + t, base, d0), (half_w - t, base + t, d1)))
        b.add("body", box_between((-half_w + t, base, d0), (half_w - t, height, d0 + t)))
        drawer_y = height - (height - base) * rng.uniform(0.25, 0.45)
        b.add("body", box_between((-half_w + t, drawer_y - t, d0), (half_w - t, drawer_y, d1)))
        b.add("body", box_between((-half_w, height - t, d0), (half_w, height, d1)))
        b.add("drawer", box_between((-half_w + t, drawer_y, d0 + t), (half_w - t, height - t, d1 - 0.005)))
        _drawer_stack(rng, b, "drawer", "drawer", handle, -half_w + t, half_w - t, drawer_y, height - t, d1, 1, 0.002)
    _carcass_top(rng, b, "body", half_w, depth, height)


def _smooth_profile(knots: Sequence[tuple[float, float]], per_span: int = 4) -> np.ndarray:
    """(M, 2) points of a smooth outline through the (height, radius) knots, heights increasing.

    Between knots the radius follows a smoothstep, so bulges are round and the slope is
    zero at every knot (a belly, a shoulder, a lip).
    """
    points = []
    for (y0, r0), (y1, r1) in zip(knots[:-1], knots[1:], strict=True):
        for s in np.linspace(0.0, 1.0, per_span, endpoint=False):
            points.append((r0 + (r1 - r0) * s * s * (3 - 2 * s), y0 + (y1 - y0) * s))
    points.append((knots[-1][1], knots[-1][0]))
    return np.asarray(points)


def _vase(rng: np.random.Generator, b: Builder) -> None:
    height = rng.uniform(0.18, 0.6)
    r_max = height * rng.uniform(0.14, 0.38)
    foot = r_max * rng.uniform(0.4, 0.9)
    belly = height * rng.uniform(0.2, 0.55)
    shoulder = height * rng.uniform(0.6, 0.85)
    neck = r_max * rng.uniform(0.3, 1.0)
    lip = neck * rng.uniform(1.0, 1.5)
    wall = max(0.003, 0.08 * neck)
    outline = _smooth_profile([(0.0, foot), (belly, r_max), (shoulder, neck)], 5)
    b.add("body", lathe(np.vstack([[(0.0, 0.0)], outline, [(0.0, shoulder)]])))
    # The neck is an open ring (the vase is hollow there), reaching a little into the body.
    outer = _smooth_profile([(shoulder - 0.02 * height, neck), (height, lip)], 4)
    inner = outer[::-1] - (wall, 0.0)
    b.add("neck", lathe(np.vstack([outer, inner])))


def _vessel(outline: np.ndarray, wall: float, floor: float) -> Piece:
    """A vessel with a floor: the outer (radius, height) outline from bottom to rim, the inside ``wall`` in.

    The floor's top is at ``outline[0] height + floor``.
    """
    y0 = outline[0, 1]
    inner = outline[::-1] - (wall, 0.0)
    inner = inner[inner[:, 1] > y0 + floor]
    bottom_r = float(np.interp(y0 + floor, outline[:, 1], outline[:, 0])) - wall
    profile = np.vstack([[(0.0, y0)], outline, inner, [(bottom_r, y0 + floor), (0.0, y0 + floor)]])
    return lathe(profile)


def _cup(rng: np.random.Generator, b: Builder) -> None:
    style = rng.choice(["tumbler", "goblet", "saucer"], p=[0.45, 0.3, 0.25])
    radius = rng.uniform(0.03, 0.05)
    wall = rng.uniform(0.002, 0.005)
    if style == "goblet":
        stem_h = rng.uniform(0.03, 0.1)
        foot_r = radius * rng.uniform(0.7, 1.0)
        bowl_h = rng.uniform(0.06, 0.12)
        b.add("base", cylinder((0, 0, 0), (0, 0.006, 0), foot_r, SECTIONS_LARGE))
        b.add("base", frustum(
            (0, 0.004, 0), (0, stem_h + 0.01, 0), rng.uniform(0.004, 0.008), rng.uniform(0.005, 0.012)
        ))
        outline = _smooth_profile(
            [(stem_h, radius * 0.3), (stem_h + bowl_h * 0.55, radius),
             (stem_h + bowl_h, radius * rng.uniform(0.8, 1.0))], 4
        )
        b.add("body", _vessel(outline, wall, 0.008))
        return
    height = rng.uniform(0.07, 0.16)
    bottom = radius * rng.uniform(0.6, 1.0)
    if style == "saucer":
        saucer_r = radius * rng.uniform(1.5, 2.1)
        saucer_h = rng.uniform(0.01, 0.02)
        b.add("base", frustum((0, 0, 0), (0, saucer_h, 0), saucer_r * 0.6, saucer_r, SECTIONS_LARGE))
        y0, height = saucer_h * 0.6, height * 0.7
    else:  # a foot ring or a heavy bottom
        foot_h = rng.uniform(0.005, 0.015)
        b.add("base", cylinder((0, 0, 0), (0, foot_h + 0.002, 0), bottom * rng.uniform(0.85, 1.0), SECTIONS_LARGE))
        y0 = foot_h
    belly = rng.uniform(-0.1, 0.15) * radius  # a slight bulge or waist halfway
    outline = _smooth_profile(
        [(y0, bottom), (y0 + height / 2, (bottom + radius) / 2 + belly), (y0 + height, radius)], 3
    )
    b.add("body", _vessel(outline, wall, rng.uniform(0.005, 0.015)))


def _armchair(rng: np.random.Generator, b: Builder) -> None:
    half_w = rng.uniform(0.32, 0.58)  # up to a "chair and a half", close to a small sofa
    depth = rng.uniform(0.6, 0.95)
    seat_h = rng.uniform(0.36, 0.47)
    back_top = seat_h + rng.uniform(0.35, 0.65)
    arm_top = seat_h + rng.uniform(0.15, 0.28)
    tilt = math.radians(rng.uniform(3.0, 15.0))
    z0, z1 = -depth / 2, depth / 2
    if rng.random() < 0.65:  # upholstered: a block on short legs or a skirt
        leg_h = rng.uniform(0.03, 0.18) if rng.random() < 0.75 else 0.0
        arm_w = rng.uniform(0.08, 0.2)
        back_t = rng.uniform(0.12, 0.25)
        if leg_h > 0:
            leg = rng.uniform(0.02, 0.035)
            for sx in (-1.0, 1.0):
                for sz in (-1.0, 1.0):
                    x, z = sx * (half_w - 0.05), sz * (depth / 2 - 0.05)
                    b.add("leg", frustum((x, 0, z), (x, leg_h + 0.01, z), leg * 0.7, leg, 12))
        else:
            leg_h = rng.uniform(0.04, 0.1)
            b.add("leg", box_between((-half_w + 0.02, 0, z0 + 0.02), (half_w - 0.02, leg_h + 0.01, z1 - 0.02)))
        cushion = rng.uniform(0.08, 0.15)
        b.add("seat", box_between((-half_w + arm_w, leg_h, z0 + back_t * 0.5), (half_w - arm_w, seat_h - cushion, z1)))
        b.add("seat", box_between(
            (-half_w + arm_w, seat_h - cushion - 0.01, z0 + back_t), (half_w - arm_w, seat_h, z1 + 0.02)
        ))
        b.add("back", _tilted_slab(-half_w, half_w, leg_h, back_top, z0, back_t, tilt, seat_h))
        if rng.random() < 0.25:  # wings at the top of the back
            for sx in (-1.0, 1.0):
                x0 = sx * half_w - (arm_w if sx > 0 else 0.0)
                b.add("back", _tilted_slab(x0, x0 + arm_w * 0.8, arm_top - 0.02, back_top - 0.05, z0 + back_t - 0.01,
                                           depth * 0.35, tilt, seat_h))
        rounded = rng.random() < 0.4
        for sx in (-1.0, 1.0):
            x0 = sx * half_w - (arm_w if sx > 0 else 0.0)
            b.add("arm", box_between((x0, leg_h, z0 + back_t * 0.5), (x0 + arm_w, arm_top, z1)))
            if rounded:
                b.add("arm", cylinder(
                    (x0 + arm_w / 2, arm_top, z0 + back_t * 0.5), (x0 + arm_w / 2, arm_top, z1), arm_w * 0.6
                ))
        return
    # A wooden frame: legs, a padded seat and back, arms on posts (a wide chair with arms).
    leg = rng.uniform(0.02, 0.04)
    seat_t = rng.uniform(0.06, 0.12)
    for sx in (-1.0, 1.0):
        for sz in (-1.0, 1.0):
            x, z = sx * (half_w - leg), sz * (depth / 2 - leg)
            b.add("leg", box_between((x - leg, 0, z - leg), (x + leg, seat_h - seat_t / 2, z + leg)))
    b.add("seat", box_between((-half_w, seat_h - seat_t, z0), (half_w, seat_h, z1)))
    back_t = rng.uniform(0.05, 0.1)
    b.add("back", _tilted_slab(-half_w, half_w, seat_h - seat_t, back_top, z0, back_t, tilt, seat_h - seat_t))
    arm_w = rng.uniform(0.05, 0.09)
    for sx in (-1.0, 1.0):
        x0 = sx * half_w - (arm_w if sx > 0 else 0.0)
        b.add("arm", box_between((x0, arm_top - 0.04, z0 + back_t), (x0 + arm_w, arm_top, z1 + 0.02)))
        b.add("arm", box_between(
            (x0 + 0.2 * arm_w, seat_h - seat_t / 2, z1 - 0.08), (x0 + 0.8 * arm_w, arm_top - 0.02, z1 - 0.03)
        ))


def _tv_stand(rng: np.random.Generator, b: Builder) -> None:
    half_w = rng.uniform(0.4, 1.0)
    height = rng.uniform(0.35, 0.8)
    depth = rng.uniform(0.35, 0.5)
    d0, d1 = -depth / 2, depth / 2
    base = _furniture_base(rng, b, "leg", half_w, depth, 0.5, (0.05, 0.2))
    t = rng.uniform(0.015, 0.03)
    for x in (-half_w, half_w - t):
        b.add("body", box_between((x, base, d0), (x + t, height, d1)))
    b.add("body", box_between((-half_w + t, base, d0), (half_w - t, base + t, d1)))
    b.add("body", box_between((-half_w, height - t, d0), (half_w, height, d1)))
    b.add("body", box_between((-half_w + t, base, d0), (half_w - t, height, d0 + t)))
    n = int(rng.integers(2, 5))
    xs = np.linspace(-half_w + t, half_w - t, n + 1)
    for x in xs[1:-1]:
        b.add("body", box_between((x - t / 2, base + t / 2, d0 + t / 2), (x + t / 2, height - t / 2, d1)))
    handle = rng.choice(["knob", "bar", "none"])
    p_closed = rng.uniform(0.0, 0.8)
    for a, c in zip(xs[:-1], xs[1:], strict=True):
        a, c = a + t / 2, c - t / 2
        what = rng.choice(["open", "door", "drawers"], p=[1 - p_closed, p_closed * 0.6, p_closed * 0.4])
        if what == "door":
            _doors(rng, b, "door", "door", handle, a, c, base + t, height - t, d1, 1, 0.003)
        elif what == "drawers":
            n = int(rng.integers(1, 3))
            _drawer_stack(rng, b, "door", "door", handle, a, c, base + t, height - t, d1, n, 0.003)
        elif rng.random() < 0.5:  # an open compartment with a shelf board
            y = (base + height) / 2
            b.add("body", box_between((a, y - t / 2, d0 + t), (c, y + t / 2, d1 - 0.02)))


def _flower_pot(rng: np.random.Generator, b: Builder) -> None:
    pot_h = rng.uniform(0.1, 0.4)
    top_r = pot_h * rng.uniform(0.4, 0.8)
    bottom_r = top_r * rng.uniform(0.6, 0.95)
    wall = max(0.006, 0.06 * top_r)
    outline = np.array([(bottom_r, 0.0), ((bottom_r + top_r) / 2, pot_h / 2), (top_r, pot_h)])
    b.add("pot", _vessel(outline, wall, 0.03 * pot_h))
    if rng.random() < 0.5:  # a rim band
        band = rng.uniform(0.08, 0.2) * pot_h
        inner, outer = top_r * 0.97, top_r * 1.08
        b.add("pot", lathe([(inner, pot_h - band), (outer, pot_h - band), (outer, pot_h), (inner, pot_h)]))
    soil = pot_h * rng.uniform(0.75, 0.92)
    soil_r = float(np.interp(soil, outline[:, 1], outline[:, 0])) - wall
    b.add("pot", cylinder((0, soil - 0.02 * pot_h, 0), (0, soil, 0), soil_r * 0.98, SECTIONS_LARGE))
    plant_h = pot_h * rng.uniform(0.6, 3.0)
    style = rng.choice(["bush", "stems", "cactus", "tree"], p=[0.3, 0.3, 0.2, 0.2])
    if style == "bush":  # leafy clumps on short stalks out of the soil
        for _ in range(int(rng.integers(3, 8))):
            angle, spread = rng.uniform(0, 2 * math.pi), rng.uniform(0.0, 0.8) * top_r
            r = rng.uniform(0.3, 0.5) * min(max(top_r, 0.4 * plant_h), plant_h)
            y = soil + rng.uniform(0.5 * r, max(0.5 * r, plant_h - r))
            centre = (spread * math.cos(angle), y, spread * math.sin(angle))
            b.add("plant", cylinder((0.5 * centre[0], soil - 0.01, 0.5 * centre[2]), centre, max(0.003, 0.1 * r), 8))
            b.add("plant", ellipsoid(centre, (r, r * rng.uniform(0.6, 1.0), r), subdivisions=1))
    elif style == "stems":
        for _ in range(int(rng.integers(3, 8))):
            angle, lean = rng.uniform(0, 2 * math.pi), math.radians(rng.uniform(5.0, 35.0))
            length = plant_h * rng.uniform(0.6, 1.0)
            direction = np.array([math.sin(lean) * math.cos(angle), math.cos(lean), math.sin(lean) * math.sin(angle)])
            foot = np.array([0.3 * top_r * math.cos(angle), soil - 0.01, 0.3 * top_r * math.sin(angle)])
            tip = foot + length * direction
            b.add("plant", cylinder(foot, tip, max(0.003, 0.012 * plant_h), 8))
            leaf = rng.uniform(0.08, 0.2) * plant_h
            b.add("plant", ellipsoid(tip, (leaf * 0.5, leaf * 0.15, leaf), subdivisions=1, matrix=rot_y(-angle)))
    elif style == "cactus":
        r = top_r * rng.uniform(0.3, 0.6)
        b.add("plant", cylinder((0, soil - 0.01, 0), (0, soil + plant_h - r, 0), r))
        b.add("plant", ellipsoid((0, soil + plant_h - r, 0), (r, r, r), subdivisions=1))
        for side in (-1.0, 1.0)[: int(rng.integers(0, 3))]:
            y = soil + plant_h * rng.uniform(0.3, 0.6)
            arm = r * 0.6
            elbow = np.array([side * (r + 1.5 * arm), y, 0.0])
            b.add("plant", cylinder((0, y, 0), elbow, arm, 12))
            b.add("plant", cylinder(elbow, elbow + (0, plant_h * 0.25, 0), arm, 12))
            b.add("plant", ellipsoid(elbow + (0, plant_h * 0.25, 0), (arm, arm, arm), subdivisions=1))
    else:
        trunk = max(0.005, 0.06 * top_r)
        crown = plant_h * rng.uniform(0.3, 0.5)
        b.add("plant", cylinder((0, soil - 0.01, 0), (0, soil + plant_h - crown, 0), trunk, 12))
        b.add("plant", ellipsoid(
            (0, soil + plant_h - crown, 0), (crown * rng.uniform(0.6, 1.0), crown, crown * rng.uniform(0.6, 1.0))
        ))


def _bathtub(rng: np.random.Generator, b: Builder) -> None:
    length = rng.uniform(1.3, 1.9)
    half_w = rng.uniform(0.33, 0.45)
    height = rng.uniform(0.4, 0.62)
    wall = rng.uniform(0.04, 0.1)
    if rng.random() < 0.5:  # freestanding: an oval, flared vessel on feet or a plinth
        lift = rng.uniform(0.06, 0.15) if rng.random() < 0.7 else 0.0
        bottom = rng.uniform(0.55, 0.85)
        outline = _smooth_profile(
            [(lift, bottom), (lift + (height - lift) * 0.6, rng.uniform(0.9, 1.0)), (height, 1.0)], 4
        )
        tub = _vessel(outline, wall / half_w, 0.04)
        b.add("tub", scale_piece(tub, (half_w, 1.0, length / 2)))
        if lift > 0:
            for sx in (-1.0, 1.0):
                for sz in (-1.0, 1.0):
                    x, z = sx * half_w * bottom * 0.75, sz * length / 2 * bottom * 0.75
                    b.add("foot", frustum(
                        (x, 0, z), (x, lift + 0.03, z), rng.uniform(0.02, 0.035), rng.uniform(0.035, 0.05), 12
                    ))
        else:
            b.add("tub", cylinder((0, 0, 0), (0, 0.02, 0), 0.8 * bottom * half_w, SECTIONS_LARGE))
        rim_z = -length / 2
    else:  # built in: a box with a hollow, sometimes on feet
        lift = rng.uniform(0.05, 0.12) if rng.random() < 0.3 else 0.0
        if lift:
            for sx in (-1.0, 1.0):
                for sz in (-1.0, 1.0):
                    x, z = sx * (half_w - 0.06), sz * (length / 2 - 0.08)
                    b.add("foot", ellipsoid((x, lift / 2 + 0.005, z), (0.04, lift / 2 + 0.01, 0.05), subdivisions=1))
        z0, z1 = -length / 2, length / 2
        b.add("tub", box_between((-half_w, lift, z0), (half_w, lift + 0.08, z1)))
        for x in (-half_w, half_w - wall):
            b.add("tub", box_between((x, lift, z0), (x + wall, height, z1)))
        for z in (z0, z1 - wall):
            b.add("tub", box_between((-half_w + wall, lift, z), (half_w - wall, height, z + wall)))
        rim_z = z0
    if rng.random() < 0.6:  # a faucet at the back end, bending over the rim
        spout = rng.uniform(0.1, 0.2)
        top = height + spout
        points = np.array([(0.0, height - 0.02, rim_z + wall / 2), (0.0, top, rim_z + wall / 2),
                           (0.0, top, rim_z + wall / 2 + 0.12), (0.0, top - 0.05, rim_z + wall / 2 + 0.15)])
        for piece in _arc_tube(points, 0.012):
            b.add("faucet", piece)


_GENERATORS: dict[str, Callable[[np.random.Generator, Builder], None]] = {
    "table": _table,
    "chair": _chair,
    "lamp": _lamp,
    "mug": _mug,
    "airplane": _airplane,
    "bottle": _bottle,
    "car": _car,
    "shelf": _shelf,
    "bed": _bed,
    "sofa": _sofa,
    "bench": _bench,
    "monitor": _monitor,
    "guitar": _guitar,
    "stool": _stool,
    "desk": _desk,
    "cabinet": _cabinet,
    "dresser": _dresser,
    "wardrobe": _wardrobe,
    "night_stand": _night_stand,
    "vase": _vase,
    "cup": _cup,
    "armchair": _armchair,
    "tv_stand": _tv_stand,
    "flower_pot": _flower_pot,
    "bathtub": _bathtub,
}


def _check_category(category: str) -> None:
    if category not in _GENERATORS:
        raise ValueError(f"unknown category {category!r}; valid categories: {', '.join(ALL_CATEGORIES)}")


def generate_shape(category: str, seed: int) -> PartMesh:
    """Generate one part-labelled instance of ``category``.

    Args:
        category: one of ``ALL_CATEGORIES`` (the demo's ``CATEGORIES`` and ``EXTRA_CATEGORIES``).
        seed: non-negative integer; the same (category, seed) always gives the same mesh,
            different seeds give instances with different proportions and variants.

    Returns:
        A PartMesh standing on y = 0, Y up, front towards +Z, footprint centred on the Y axis.
    """
    _check_category(category)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    builder = Builder(category)
    _GENERATORS[category](np.random.default_rng(int(seed)), builder)
    return builder.build()


def demo_objects(n_objects: int, seed: int, categories: Sequence[str] = CATEGORIES) -> list[tuple[str, str, int]]:
    """The demo corpus listing.

    Object ``i`` has category ``categories[i % len(categories)]`` (round-robin, so counts
    differ by at most one), id ``f"{category}_{i // len(categories):04d}"`` and a shape
    seed drawn from ``SeedSequence(seed, spawn_key=(i,))``, i.e. the seed of the i-th child
    of ``SeedSequence(seed)``. Entry i therefore does not depend on ``n_objects``.

    Returns:
        ``n_objects`` tuples (object_id, category, shape_seed).
    """
    if isinstance(n_objects, bool) or not isinstance(n_objects, (int, np.integer)) or n_objects < 0:
        raise ValueError(f"n_objects must be a non-negative integer, got {n_objects!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    categories = tuple(categories)
    if not categories:
        raise ValueError("categories must not be empty")
    for category in categories:
        _check_category(category)
    if len(set(categories)) != len(categories):
        raise ValueError(f"categories must be distinct, got {categories}")
    listing = []
    for i in range(int(n_objects)):
        category = categories[i % len(categories)]
        state = np.random.SeedSequence(int(seed), spawn_key=(i,)).generate_state(1, dtype=np.uint32)
        listing.append((f"{category}_{i // len(categories):04d}", category, int(state[0])))
    return listing
