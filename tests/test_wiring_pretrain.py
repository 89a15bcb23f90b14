"""How the pre-training pieces are wired together (not what each piece computes alone).

Each test compares the real code path (``step_loss`` -> ``PicAtPoint`` -> ``project_to_cells``
-> the InfoNCE losses, single process and a 2-process gloo group) with an independent
computation written here, chosen so that a plausible wiring slip changes the answer:

1. the cell a centre projects into and the image-cell embedding it is contrasted with are the
   same (row, col) of the (B, C, g, g) feature map (a row/col transpose, a column-major
   flatten or an off-by-one is caught: the cells used are not on the diagonal);
2. the training step projects and pose-encodes with the camera moved along with the rotated
   cloud (M_view' = M_view R^T), in one process and across ranks;
3. the image-border rule: cell = (floor(g v), floor(g u)), valid iff (u, v) in [0, 1)^2 and
   in front of the camera; no index wraps into a neighbouring row.

The hand computations run in float64 with the model in eval mode (BatchNorm then is a fixed
per-sample map, so the heads can be applied to single samples or single cells).
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from test_pretrain_engine import ToyBackbone
from torch import Tensor

from picat.geometry import dodecahedron_cameras
from picat.pretrain.correspondence import project_to_cells, random_rotations
from picat.pretrain.distributed import Ranks
from picat.pretrain.engine import TrainSettings, data_parallel, step_loss
from picat.pretrain.model import PicAtPoint

GRID = 7
IMAGE_DIM = 8
TAU = 0.1
SETTINGS = TrainSettings(epochs=1, batch_size=4, temperature=TAU, grid=GRID)
WORLD = 2
Cell = tuple[int, int]


# ----------------------------------------------------------------------------- helpers

def build_model(seed: int = 0) -> PicAtPoint:
    """A float64 PicAtPoint (toy backbone, real heads) in eval mode, the same for every seed use."""
    torch.manual_seed(seed)
    model = PicAtPoint(ToyBackbone(), image_dim=IMAGE_DIM, latent_dim=12, pose_dim=4).double().eval()
    # Non-trivial BatchNorm running statistics, so eval-mode BN is not the identity.
    generator = torch.Generator().manual_seed(seed + 1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(0.1 * torch.randn(module.num_features, generator=generator, dtype=torch.float64))
            module.running_var.copy_(0.5 + torch.rand(module.num_features, generator=generator, dtype=torch.float64))
    return model


def depth_proj(batch: int, dtype: torch.dtype = torch.float64) -> Tensor:
    """(B, 4, 4) M_proj with clip = (x, y, z, z): ndc = (x / z, y / z), in front iff z > 0.

    With an identity M_view, a point (x, y, 1) has u = (x + 1) / 2, v = (1 - y) / 2 exactly.
    """
    proj = torch.zeros(4, 4, dtype=dtype)
    proj[0, 0] = proj[1, 1] = proj[2, 2] = proj[3, 2] = 1.0
    return proj.expand(batch, 4, 4).clone()


def identity_views(batch: int, dtype: torch.dtype = torch.float64) -> Tensor:
    return torch.eye(4, dtype=dtype).expand(batch, 4, 4).clone()


def point_at(u: float, v: float, depth: float = 1.0) -> list[float]:
    """The world point that :func:`depth_proj` (identity view) maps to image coordinates (u, v)."""
    return [(2.0 * u - 1.0) * depth, (1.0 - 2.0 * v) * depth, depth]


def cell_centre_point(cell: Cell, grid: int = GRID) -> list[float]:
    """A point projecting to the middle of feature-map cell (row, col)."""
    row, col = cell
    return point_at((col + 0.5) / grid, (row + 0.5) / grid)


def pad_rotation(rotation: Tensor) -> Tensor:
    """(B, 3, 3) -> (B, 4, 4) homogeneous rotations."""
    padded = torch.zeros(len(rotation), 4, 4, dtype=rotation.dtype)
    padded[:, :3, :3] = rotation
    padded[:, 3, 3] = 1.0
    return padded


def hand_cell(centre: Tensor, view: Tensor, proj: Tensor, grid: int = GRID) -> Cell | None:
    """(row, col) of one centre by the documented rule, or None when it is not in the image."""
    clip = proj @ view @ torch.cat([centre, centre.new_ones(1)])
    w = float(clip[3])
    if w <= 0.0:
        return None
    u, v = (float(clip[0]) / w + 1.0) / 2.0, (1.0 - float(clip[1]) / w) / 2.0
    if not (0.0 <= u < 1.0 and 0.0 <= v < 1.0):
        return None
    return math.floor(grid * v), math.floor(grid * u)


def hand_local_terms(z_local: Tensor, image_maps: Tensor, cells: list[list[Cell | None]], objects: range,
                     tau: float = TAU) -> tuple[float, int]:
    """Summed local InfoNCE of the valid centres of ``objects``, and their number.

    z_local: (B, L, d) point embeddings; image_maps: (B, d, g, g) image-cell embeddings in
    the feature-map layout; cells[b][l]: the centre's (row, col) or None. The positive is
    picked as image_maps[b, :, row, col]; the negatives are every cell of every image.
    """
    batch, dim, grid, _ = image_maps.shape
    negatives = torch.stack([image_maps[k, :, r, c] for k in range(batch) for r in range(grid) for c in range(grid)])
    total, count = 0.0, 0
    for b in objects:
        for index, cell in enumerate(cells[b]):
            if cell is None:
                continue
            query = z_local[b, index]
            positive = image_maps[b, :, cell[0], cell[1]]
            total += float(torch.logsumexp(negatives @ query / tau, 0) - positive @ query / tau)
            count += 1
    return total, count


def hand_global_terms(z_global: Tensor, q_global: Tensor, objects: range, tau: float = TAU) -> float:
    """Summed global InfoNCE of ``objects`` against all images (the positive is the same row)."""
    total = 0.0
    for b in objects:
        scores = [float(z_global[b] @ q_global[k]) / tau for k in range(len(q_global))]
        total += math.log(sum(math.exp(s) for s in scores)) - scores[b]
    return total


def moved_views(view: Tensor, rotation: Tensor) -> Tensor:
    """M_view' = M_view R^T (R^-1 = R^T), written out here rather than taken from the code."""
    return view @ pad_rotation(rotation.transpose(1, 2))


def rotated_points(points: Tensor, rotation: Tensor) -> Tensor:
    return torch.einsum("bij,bnj->bni", rotation, points)


def hand_losses(model: PicAtPoint, batch: dict[str, Tensor], points: Tensor, view: Tensor,
                pose_view: Tensor | None = None) -> dict:
    """The step's losses computed by hand from (already rotated) ``points`` and camera ``view``
    (``pose_view``, default ``view``, is the camera the pose encoding sees).

    Returns the global-batch "local", "global", "loss", "valid_fraction" and, per contiguous
    slice of objects, the summed terms (for the data-parallel objective).
    """
    with torch.no_grad():
        global_features, local_features, centres = model.backbone.forward_features(points)
        z_global = model.point_global(global_features)
        q_global = model.image_global(batch["image_global"])
        z_local = model.point_local(local_features, view if pose_view is None else pose_view).transpose(1, 2)
        image_maps = model.image_local(batch["image_local"])  # (B, d, g, g): the feature-map layout
    batch_size = len(points)
    cells = [[hand_cell(centre, view[b], batch["proj"][b]) for centre in centres[b]] for b in range(batch_size)]
    local_sum, valid = hand_local_terms(z_local, image_maps, cells, range(batch_size))
    global_sum = hand_global_terms(z_global, q_global, range(batch_size))
    result = {"local": local_sum / max(valid, 1), "global": global_sum / batch_size,
              "valid_fraction": valid / centres.shape[0] / centres.shape[1], "valid": valid, "cells": cells}
    result["loss"] = result["local"] + result["global"]

    def share(objects: range) -> float:
        return (hand_global_terms(z_global, q_global, objects) / batch_size
                + hand_local_terms(z_local, image_maps, cells, objects)[0] / max(valid, 1))

    result["share"] = share
    return result


def camera_batch(batch_size: int = 4, n_points: int = 12, seed: int = 0) -> tuple[dict[str, Tensor], Tensor]:
    """A float64 batch seen by real perspective cameras, and so3 rotations (deterministic)."""
    generator = torch.Generator().manual_seed(seed)
    views, projs = dodecahedron_cameras(2.5, 50.0)
    picks = [0, 5, 11, 17][:batch_size]
    points = torch.rand(batch_size, n_points, 3, generator=generator, dtype=torch.float64) * 1.2 - 0.6
    batch = {
        "points": points,
        "view": torch.tensor(views[picks]),
        "proj": torch.tensor(projs[picks]),
        "image_local": torch.randn(batch_size, IMAGE_DIM, GRID, GRID, generator=generator, dtype=torch.float64),
        "image_global": torch.randn(batch_size, IMAGE_DIM, generator=generator, dtype=torch.float64),
    }
    generator = torch.Generator().manual_seed(seed + 1)
    rotation = random_rotations(batch_size, "so3", generator=generator, dtype=torch.float64)
    return batch, rotation


def as_floats(losses: dict[str, Tensor]) -> dict[str, float]:
    return {key: float(value.detach()) for key, value in losses.items()}


# ------------------------------------------------- 1. point cells and image cells are the same cells

ASYMMETRIC_CELLS: list[list[Cell | None]] = [
    [(1, 5), (6, 2), (0, 3), (4, 0)],
    [(5, 1), (2, 6), (3, 4), None],  # None: a centre right of the image (u = 1.3)
]


def test_local_positive_is_the_feature_map_cell_at_the_centres_row_and_col():
    """The local loss of ``step_loss`` (real PicAtPoint, real heads, image features (B, C, g, g))
    equals a hand InfoNCE whose positive is picked as image_maps[b, :, row, col], with (row, col)
    read off the known projection. No cell is on the diagonal and both objects use mirrored
    cells, so swapping rows and cols (in project_to_cells or by flattening the map column-major
    in the model) or shifting the index by one changes the positives and the loss."""
    model = build_model()
    points = torch.tensor([[cell_centre_point(cell) if cell else point_at(1.3, 0.5) for cell in row]
                           for row in ASYMMETRIC_CELLS], dtype=torch.float64)
    generator = torch.Generator().manual_seed(3)
    batch = {"points": points, "view": identity_views(2), "proj": depth_proj(2),
             "image_local": torch.randn(2, IMAGE_DIM, GRID, GRID, generator=generator, dtype=torch.float64),
             "image_global": torch.randn(2, IMAGE_DIM, generator=generator, dtype=torch.float64)}
    with torch.no_grad():
        losses = as_floats(step_loss(model, batch, torch.eye(3, dtype=torch.float64).expand(2, 3, 3), SETTINGS))
        _, local_features, _ = model.backbone.forward_features(points)
        z_local = model.point_local(local_features, batch["view"]).transpose(1, 2)
        image_maps = model.image_local(batch["image_local"])
    total, count = hand_local_terms(z_local, image_maps, ASYMMETRIC_CELLS, range(2))
    assert count == 7 and losses["valid_fraction"] == pytest.approx(7 / 8, abs=1e-12), losses
    assert losses["local"] == pytest.approx(total / count, rel=1e-10, abs=1e-12), (
        f"step_loss local {losses['local']} != hand InfoNCE with positives at (row, col) {total / count}")
    transposed = [[(cell[1], cell[0]) if cell else None for cell in row] for row in ASYMMETRIC_CELLS]
    wrong, _ = hand_local_terms(z_local, image_maps, transposed, range(2))
    assert abs(wrong / count - total / count) > 1e-3, "the setup cannot tell rows from cols"


def test_the_distinctive_cell_is_the_positive_embedding():
    """Each image's feature map is one constant vector except a distinctive vector at one
    off-diagonal (row, col); the object's only centre projects into that cell. The local loss
    must be the InfoNCE whose positive is the image head applied to the distinctive vector
    alone (and the 48 others are the head of the constant), i.e. the cell the centre falls
    into is the cell whose features the positive embedding was computed from."""
    model = build_model(seed=4)
    cells: list[Cell] = [(1, 5), (6, 3)]
    generator = torch.Generator().manual_seed(5)
    common = torch.randn(IMAGE_DIM, generator=generator, dtype=torch.float64)
    distinctive = 3.0 * torch.randn(2, IMAGE_DIM, generator=generator, dtype=torch.float64)
    image_local = common[None, :, None, None].repeat(2, 1, GRID, GRID)
    for b, (row, col) in enumerate(cells):
        image_local[b, :, row, col] = distinctive[b]
    points = torch.tensor([[cell_centre_point(cell)] for cell in cells], dtype=torch.float64)
    batch = {"points": points, "view": identity_views(2), "proj": depth_proj(2), "image_local": image_local,
             "image_global": torch.randn(2, IMAGE_DIM, generator=generator, dtype=torch.float64)}
    with torch.no_grad():
        local = float(step_loss(model, batch, torch.eye(3, dtype=torch.float64).expand(2, 3, 3), SETTINGS)["local"])
        z = model.point_local(model.backbone.forward_features(points)[1], batch["view"])[:, :, 0]  # (2, d)
        special = model.image_local(distinctive[:, :, None, None])[:, :, 0, 0]  # head of each distinctive vector
        plain = model.image_local(common[None, :, None, None])[0, :, 0, 0]  # head of the constant vector
    expected = []
    for b in range(2):
        scores = torch.cat([special @ z[b], (plain @ z[b]).expand(2 * (GRID * GRID - 1))]) / TAU
        expected.append(float(torch.logsumexp(scores, 0) - special[b] @ z[b] / TAU))
    assert local == pytest.approx(sum(expected) / 2, rel=1e-10), (
        f"local loss {local} is not the InfoNCE with the distinctive cell as positive ({sum(expected) / 2})")
    with_plain_positive = sum(float(torch.logsumexp(torch.cat([special @ z[b], (plain @ z[b]).expand(96)]) / TAU, 0)
                                    - plain @ z[b] / TAU) for b in range(2)) / 2
    assert abs(with_plain_positive - local) > 1e-3, "the setup cannot tell the distinctive cell from the others"


# ------------------------------------------------------- 2. the training step uses the moved camera

def test_step_loss_projects_and_encodes_the_pose_with_the_moved_camera():
    """With so3 rotations, step_loss's losses equal the hand computation from the rotated
    points p' = R p and the moved camera M_view' = M_view R^T (for both the cells and the
    pose encoding), and differ from the same computation with the unrotated camera in either
    role: a step that forgot to move the camera (or moved it the wrong way) is caught."""
    model = build_model(seed=1)
    batch, rotation = camera_batch()
    assert float((rotation - torch.eye(3, dtype=torch.float64)).flatten(1).norm(dim=1).min()) > 0.5
    with torch.no_grad():
        losses = as_floats(step_loss(model, batch, rotation, SETTINGS))
    points = rotated_points(batch["points"], rotation)
    moved = moved_views(batch["view"], rotation)
    expected = hand_losses(model, batch, points, moved)
    # Sanity of the hand code: the moved camera sees every rotated point where the old one saw it.
    unrotated = [[hand_cell(c, batch["view"][b], batch["proj"][b]) for c in batch["points"][b]] for b in range(4)]
    assert expected["cells"] == unrotated
    assert expected["valid"] == 48 and len({cell for row in unrotated for cell in row}) > 12
    for key in ("local", "global", "loss", "valid_fraction"):
        assert losses[key] == pytest.approx(expected[key], rel=1e-10, abs=1e-12), (
            f"{key}: step_loss {losses[key]} != hand computation with the moved camera {expected[key]}")
    # The hand computation tells the cameras apart in each role: projection, pose encoding, both.
    for cells_view, pose_view in [(batch["view"], moved), (moved, batch["view"]), (batch["view"], batch["view"])]:
        stale = hand_losses(model, batch, points, cells_view, pose_view)
        assert abs(stale["local"] - expected["local"]) > 1e-3, "the unrotated camera must change the local loss"


# --------------------------------------------------------- 2b. the same across a 2-process group

def _rank_main(rank: int, folder: Path) -> None:
    """One rank: its slice of the global batch through data_parallel + step_loss; results to a file."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder / 'rendezvous'}", rank=rank, world_size=WORLD)
    try:
        ranks = Ranks(rank, WORLD, rank)
        model = build_model(seed=2)
        net = data_parallel(model, ranks, torch.device("cpu"))
        batch, rotation = camera_batch(seed=6)
        per_rank = len(rotation) // WORLD
        rows = slice(rank * per_rank, (rank + 1) * per_rank)
        with torch.no_grad():
            mine = {key: value[rows] for key, value in batch.items()}
            losses = step_loss(net, mine, rotation[rows], SETTINGS, ranks=ranks)
        torch.save(as_floats(losses), folder / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def sharded_losses(tmp_path_factory) -> list[dict[str, float]]:
    """step_loss's outputs on each of 2 gloo ranks (spawned processes) for camera_batch(seed=6)."""
    folder = tmp_path_factory.mktemp("wiring_ddp")
    mp.spawn(_rank_main, args=(folder,), nprocs=WORLD, join=True)
    return [torch.load(folder / f"rank{rank}.pt") for rank in range(WORLD)]


def test_data_parallel_step_equals_a_hand_global_batch_infonce_with_moved_cameras(sharded_losses):
    """Every rank reports the hand-computed global-batch losses (rotated points, moved cameras,
    all 4 objects' images as negatives), and rank r's objective is W times its own objects'
    share (so rank 1's positives are global objects 2 and 3, not 0 and 1). A rank that
    projected with the unrotated camera or offset its positives wrongly is caught."""
    model = build_model(seed=2)
    batch, rotation = camera_batch(seed=6)
    points = rotated_points(batch["points"], rotation)
    expected = hand_losses(model, batch, points, moved_views(batch["view"], rotation))
    stale = hand_losses(model, batch, points, batch["view"])
    assert abs(stale["local"] - expected["local"]) > 1e-2, "the unrotated camera must change the local loss"
    per_rank = len(rotation) // WORLD
    for rank, losses in enumerate(sharded_losses):
        for key in ("local", "global", "loss", "valid_fraction"):
            assert losses[key] == pytest.approx(expected[key], rel=1e-10, abs=1e-12), (
                f"rank {rank} {key}: {losses[key]} != hand global-batch value {expected[key]}")
        share = expected["share"](range(rank * per_rank, (rank + 1) * per_rank))
        assert losses["objective"] == pytest.approx(WORLD * share, rel=1e-10), (
            f"rank {rank} objective {losses['objective']} != W x its objects' share {WORLD * share}")
    assert sum(losses["objective"] for losses in sharded_losses) / WORLD == pytest.approx(expected["loss"], rel=1e-10)


# ------------------------------------------------------------------------- 3. edges of the image

EPS = 2.0 ** -20  # exactly representable offsets in u, v (x, y move by 2 EPS), float32 included
EDGE_CASES: list[tuple[str, float, float, Cell | None]] = [
    # name, u, v, expected (row, col) or None; v = 0.25 is row 1, u = 0.75 col 5 (off the diagonal)
    ("left on the border u=0", 0.0, 0.25, (1, 0)),
    ("left just beyond u=-eps", -EPS, 0.25, None),
    ("left far beyond", -0.3, 0.25, None),
    ("right just inside u=1-eps", 1.0 - EPS, 0.25, (1, GRID - 1)),
    ("right on the border u=1", 1.0, 0.25, None),
    ("right just beyond u=1+eps", 1.0 + EPS, 0.25, None),
    ("top on the border v=0", 0.75, 0.0, (0, 5)),
    ("top just beyond v=-eps", 0.75, -EPS, None),
    ("bottom just inside v=1-eps", 0.75, 1.0 - EPS, (GRID - 1, 5)),
    ("bottom on the border v=1", 0.75, 1.0, None),
    ("bottom just beyond v=1+eps", 0.75, 1.0 + EPS, None),
    ("top-left corner", 0.0, 0.0, (0, 0)),
    ("bottom-right corner inside", 1.0 - EPS, 1.0 - EPS, (GRID - 1, GRID - 1)),
    ("bottom-left corner on the border", 0.0, 1.0, None),
    ("top-right corner on the border", 1.0, 0.0, None),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("depth", [1.0, 4.0])
def test_border_rule_is_half_open_and_never_wraps_into_another_row(dtype, depth):
    """Centres exactly on and just beyond all four borders (u, v exact in both float types):
    u = 0 / v = 0 are col / row 0, u = 1 / v = 1 and anything beyond are invalid (index 0),
    u = 1 - eps is col g - 1. A column of -1 or g must not become the neighbouring row's cell
    (row * g - 1 or row * g + g), an inclusive upper bound must not let u = 1 in. Depth 4
    checks that u, v are taken after the perspective division."""
    points = torch.tensor([[point_at(u, v, depth) for _, u, v, _ in EDGE_CASES]], dtype=dtype)
    cells, valid = project_to_cells(points, identity_views(1, dtype), depth_proj(1, dtype), GRID)
    for index, (name, u, v, expected) in enumerate(EDGE_CASES):
        got = (bool(valid[0, index]), int(cells[0, index]))
        want = (expected is not None, 0 if expected is None else expected[0] * GRID + expected[1])
        assert got == want, f"{name} (u={u}, v={v}): (valid, cell) = {got}, documented rule gives {want}"


def test_centres_behind_or_at_the_camera_are_invalid():
    """Points with w <= 0 are invalid even where x / w, y / w would fall inside the image
    (a behind-the-camera point must not be mirrored into the image), also through step_loss's
    valid fraction."""
    points = torch.tensor([[[0.5, 0.5, -1.0], [-0.2, 0.4, -3.0], [0.0, 0.0, 0.0], [0.5, 0.5, 1.0]]],
                          dtype=torch.float64)
    cells, valid = project_to_cells(points, identity_views(1), depth_proj(1), GRID)
    assert valid[0].tolist() == [False, False, False, True], valid
    assert cells[0].tolist() == [0, 0, 0, 1 * GRID + 5], cells
    model = build_model()
    batch = {"points": points, "view": identity_views(1), "proj": depth_proj(1),
             "image_local": torch.randn(1, IMAGE_DIM, GRID, GRID, dtype=torch.float64),
             "image_global": torch.randn(1, IMAGE_DIM, dtype=torch.float64)}
    with torch.no_grad():
        losses = step_loss(model, batch, torch.eye(3, dtype=torch.float64)[None], SETTINGS)
    assert float(losses["valid_fraction"]) == 0.25
