"""Category recipes: synthetic, part-labelled shapes that stand in for ShapeNet in the demo suite.

The demo suite runs the whole pipeline without downloading any dataset, so it needs a
corpus of meshes that look enough like ShapeNet objects for rendering, sampling and
pre-training to be meaningful. Each shape is assembled from a handful of primitives
(``picat.demo.primitives``: boxes, cylinders, frusta, ellipsoids, deformed boxes) with
random proportions, and every face remembers which part it came from, so later stand-ins
(ModelNet40 classification, ScanObjectNN partial scans, ShapeNetPart segmentation, S3DIS
rooms) can reuse the same generator. The conventions (Y up, front +Z, metres) are
``picat.demo.part_mesh``'s.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from picat.demo.part_mesh import CATEGORIES, PartMesh
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
    panel,
    rot_y,
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
}


def _check_category(category: str) -> None:
    if category not in _GENERATORS:
        raise ValueError(f"unknown category {category!r}; valid categories: {', '.join(CATEGORIES)}")


def generate_shape(category: str, seed: int) -> PartMesh:
    """Generate one part-labelled instance of ``category``.

    Args:
        category: one of ``CATEGORIES``.
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
