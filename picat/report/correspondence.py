"""The correspondence metric: does a local centre's embedding retrieve its own image cell?

This is the paper's Figure 4 claim as a number, measured on held-out objects that pre-training
never read (the corpus's ``heldout_NNNNN`` shards, docs/pretraining.md "Held-out objects").

For every held-out object and every one of its rendered views, the model (in eval mode, the
view's pose given as in training, no augmentation rotation) embeds

* the local centres of the cloud: z_l (L, d), the local point head on the backbone's local
  features (DGCNN's FPS centres when ``local_centres`` is set, PointNeXt's last-stage
  centres), conditioned on the view's M_view;
* the g x g cells of the view: q (G, d), G = g*g, the local image head on the cached frozen
  2D feature map.

Only centres the camera sees are scored: in front of the camera, inside the image, on the
object's mask and not hidden behind the cloud's own nearer points (:func:`visible_on_mask`).
Each such centre's *own cell* is the cell it projects into. Similarity is cosine (both sides
are L2-normalised, as in the local InfoNCE loss).

Retrieval tasks (top-k: the own cell is among the k best-scored candidates):

* ``view``: the candidates are the G cells of the centre's own view (chance k / G);
* ``batch``: the candidates are all cells of a batch of B object-views of B distinct objects
  (chance k / (B G)), as the local InfoNCE loss sees them: the other objects' cells are
  negatives. Batches are fixed and deterministic (:func:`batch_plan`).

Predictors, each scored on the same centres:

* ``model``: the centre's own embedding, cells ranked by cosine similarity;
* ``object_mean``: one prediction per object-view for all its centres: cells ranked by their
  similarity to the mean embedding of the view's scored centres (the cell "most similar on
  average"). Beating it means the per-point embeddings carry more than "this is the object";
* ``mask_prior``: model-free, knows only the masks: cells ranked by the fraction of their pixels
  that show the object. Centres are spread over the visible surface, so the chance that a
  centre lands in a cell grows with the object pixels the cell holds: this is the best
  ranking a predictor can make from the mask alone (up to the order within equally covered
  cells, which it leaves tied). In ``batch`` it ranks every image's cells this way, not
  knowing which image is the centre's own. Beating it means the model localises within the
  object, not only object against background;
* ``neighbour_cell`` (a control, not a predictor): the model's top-k rate of the object cell
  nearest to the own cell (an other cell at least half object, nearest on the grid; several
  equally near ones are averaged). If the embeddings only knew "object" and not "where", own
  and neighbour cells would be retrieved equally often. Centres whose own cell has no object
  neighbour are left out of it (its own n);
* ``chance``: k / G and k / (B G).

Ties: a candidate scored equal to the own cell is ranked before it with probability 1/2 (the
expected top-k under random tie-breaking, :func:`topk_hits`): the model's float scores are
practically never tied, the mask prior's full cells are.

Every rate is a micro-average over the scored centres (each centre weighs the same), in
percent, with its n (centres) and the object-views they come from.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch

from picat.geometry import project_points

PREDICTORS = ("model", "object_mean", "mask_prior", "neighbour_cell", "chance")
TASKS = ("view", "batch")
TOP_K = (1, 5)
# Visibility test: a centre is visible when no cloud point projecting within this uv radius
# lies more than DEPTH_TOLERANCE (world units; clouds fill the unit sphere) in front of it.
OCCLUSION_RADIUS_UV = 0.03
DEPTH_TOLERANCE = 0.06
# An "object cell" (the neighbour-cell control's candidates) is at least this much object.
OBJECT_CELL_COVERAGE = 0.5


def metric_name(task: str, k: int) -> str:
    """``view_top1``, ``batch_top5``, ...: the key of one rate in the result JSON and the tables."""
    return f"{task}_top{k}"


METRICS = tuple(metric_name(task, k) for task in TASKS for k in TOP_K)


# --- pure functions ----------------------------------------------------------------------------


def topk_hits(scores: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """Expected top-k hit of each row's own candidate, ties broken uniformly at random.

    With ``a`` candidates scored strictly higher than the own one and ``t`` others scored
    equal to it, the own candidate's rank is uniform on a+1 .. a+t+1, so it is in the top k
    with probability clip((k - a) / (t + 1), 0, 1).

    Args:
        scores: (K, C) scores of C candidates for K queries (higher = better), or (C,) shared
            by every query.
        own: (K,) int index of each query's own candidate in [0, C).
        k: how many top candidates count as a hit (>= 1).

    Returns:
        (K,) float in [0, 1].
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    own = np.asarray(own, dtype=np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim == 1:
        scores = np.broadcast_to(scores, (len(own), len(scores)))
    if scores.ndim != 2 or len(scores) != len(own):
        raise ValueError(f"scores must be (K, C) or (C,) with K = len(own) = {len(own)}, got {scores.shape}")
    if len(own) and (own.min() < 0 or own.max() >= scores.shape[1]):
        raise ValueError(f"own candidates must lie in [0, {scores.shape[1]}), got {own.min()}..{own.max()}")
    mine = scores[np.arange(len(own)), own][:, None]
    above = (scores > mine).sum(axis=1)
    tied = (scores == mine).sum(axis=1) - 1
    return np.clip((k - above) / (tied + 1), 0.0, 1.0)


def mask_coverage(mask: np.ndarray, grid: int) -> np.ndarray:
    """(g*g,) fraction of each feature-map cell's pixels that show the object (row-major).

    Args:
        mask: (H, W) bool object pixels. grid: g; pixel (r, c) belongs to cell
            (floor(r g / H), floor(c g / W)), as in :mod:`picat.models.image`.
    """
    height, width = mask.shape
    rows = np.arange(height) * grid // height
    cols = np.arange(width) * grid // width
    cell_of_pixel = rows[:, None] * grid + cols[None, :]
    covered = np.bincount(cell_of_pixel.ravel(), weights=mask.ravel().astype(float), minlength=grid * grid)
    return covered / np.bincount(cell_of_pixel.ravel(), minlength=grid * grid)


def visible_on_mask(centres: np.ndarray, cloud: np.ndarray, view: np.ndarray, proj: np.ndarray,
                    mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Which centres the camera sees: in the image, on the object's mask, not occluded.

    Occlusion is judged against the cloud itself: a centre is hidden when a cloud point that
    projects close to it (``OCCLUSION_RADIUS_UV``) is more than ``DEPTH_TOLERANCE`` nearer.

    Args:
        centres: (L, 3) xyz. cloud: (N, 3) xyz of the whole cloud. view, proj: (4, 4).
        mask: (H, W) bool object pixels.

    Returns:
        visible (L,) bool and uv (L, 2) of the centres.
    """
    uv, in_front = project_points(centres, view, proj)
    cloud_uv, cloud_in_front = project_points(cloud, view, proj)
    depth = -(np.c_[centres, np.ones(len(centres))] @ np.asarray(view, np.float64).T)[:, 2]  # OpenGL looks down -Z
    cloud_depth = -(np.c_[cloud, np.ones(len(cloud))] @ np.asarray(view, np.float64).T)[:, 2]
    cloud_depth = np.where(cloud_in_front, cloud_depth, np.inf)
    near = np.linalg.norm(uv[:, None, :] - cloud_uv[None, :, :], axis=-1) < OCCLUSION_RADIUS_UV  # (L, N)
    nearest = np.where(near, cloud_depth[None, :], np.inf).min(axis=1)
    unoccluded = depth <= nearest + DEPTH_TOLERANCE
    height, width = mask.shape
    cols, rows = np.floor(uv[:, 0] * width).astype(int), np.floor(uv[:, 1] * height).astype(int)
    inside = in_front & (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    on_mask = np.zeros(len(centres), bool)
    on_mask[inside] = mask[rows[inside], cols[inside]]
    return inside & on_mask & unoccluded, uv


def neighbour_cells(own: int, object_cells: np.ndarray, grid: int) -> np.ndarray:
    """The object cells other than ``own`` nearest to it on the g x g grid (Euclidean, in cells).

    Args:
        own: the own cell, row-major in [0, g*g). object_cells: (g*g,) bool, which cells count
            as object. grid: g.

    Returns:
        (M,) int cells, all at the smallest distance (M = 0 when no other object cell exists).
    """
    candidates = np.flatnonzero(object_cells)
    candidates = candidates[candidates != own]
    if not len(candidates):
        return candidates
    rows, cols = np.divmod(candidates, grid)
    own_row, own_col = divmod(int(own), grid)
    distance = (rows - own_row) ** 2 + (cols - own_col) ** 2
    return candidates[distance == distance.min()]


def batch_plan(n_objects: int, n_views: int, batch_size: int, seed: int) -> list[list[tuple[int, int, bool]]]:
    """Fixed, deterministic batches covering every (object, view) pair exactly once as a query.

    Round r (r = 0 .. V-1) gives object i its view (i + r) mod V, so a batch mixes views as a
    training batch does, and over the rounds every object is seen in every view. Each round's
    objects are shuffled by a generator seeded by (seed, r) and cut into batches of
    b = min(B, n_objects) distinct objects; the round's last batch is filled up with the
    round's first objects as negatives only (their centres are scored in their own batch), so
    every query sees exactly b - 1 other objects' cells.

    Returns:
        batches; each a list of (object index, view index, scored) of length b.
    """
    if n_objects < 1 or n_views < 1 or batch_size < 1:
        raise ValueError(f"need n_objects, n_views and batch_size >= 1, got {n_objects}, {n_views}, {batch_size}")
    size = min(batch_size, n_objects)
    batches = []
    for round_index in range(n_views):
        order = np.random.default_rng([seed, round_index]).permutation(n_objects).tolist()
        for start in range(0, n_objects, size):
            members = [(obj, (obj + round_index) % n_views, True) for obj in order[start:start + size]]
            fill = [(obj, (obj + round_index) % n_views, False) for obj in order[: size - len(members)]]
            batches.append(members + fill)
    return batches


@dataclass(frozen=True)
class ScoredView:
    """One object-view's embeddings, restricted to the centres that are scored (shapes below).

    Attributes:
        z: (K, d) L2-normalised local point embeddings of the K visible, in-image centres.
        own: (K,) int own cell of each, row-major in [0, G).
        q: (G, d) L2-normalised local image embeddings of the view's cells (row-major).
        coverage: (G,) object fraction of each cell (:func:`mask_coverage`).
    """

    z: np.ndarray
    own: np.ndarray
    q: np.ndarray
    coverage: np.ndarray


class Tally:
    """Running sums of top-k hits and the number of centres, per (predictor, metric)."""

    def __init__(self) -> None:
        self.hits = {(p, m): 0.0 for p in PREDICTORS for m in METRICS}
        self.counts = {(p, m): 0 for p in PREDICTORS for m in METRICS}
        self.object_views = 0

    def add(self, predictor: str, metric: str, hits: np.ndarray) -> None:
        self.hits[predictor, metric] += float(np.sum(hits))
        self.counts[predictor, metric] += int(np.size(hits))

    def rates(self) -> dict[str, dict[str, float | None]]:
        """Percent per predictor and metric (None where nothing was scored)."""
        return {p: {m: (100.0 * self.hits[p, m] / self.counts[p, m] if self.counts[p, m] else None)
                    for m in METRICS} for p in PREDICTORS}

    def n(self) -> dict[str, dict[str, int]]:
        return {p: {m: self.counts[p, m] for m in METRICS} for p in PREDICTORS}


def score_batch(views: Sequence[ScoredView], scored: Sequence[bool], tally: Tally, grid: int) -> None:
    """Add one batch's top-k hits of every predictor to ``tally``.

    Args:
        views: the batch's b object-views (distinct objects); cell j of view i is candidate
            i * G + j of the batch task.
        scored: (b,) whether view i's centres are queries (False: negatives only).
        grid: g (G = g*g).
    """
    cells = grid * grid
    all_q = np.concatenate([view.q for view in views])  # (b G, d)
    all_coverage = np.concatenate([view.coverage for view in views])  # (b G,)
    size = len(views)
    for index, (view, is_query) in enumerate(zip(views, scored, strict=True)):
        if not is_query or not len(view.own):
            continue
        tally.object_views += 1
        in_batch = index * cells + view.own
        similarity = view.z @ view.q.T  # (K, G)
        batch_similarity = view.z @ all_q.T  # (K, b G)
        mean = view.z.mean(axis=0)  # one prediction for the whole object-view
        decoys = [neighbour_cells(own, view.coverage >= OBJECT_CELL_COVERAGE, grid) for own in view.own]
        for k in TOP_K:
            view_metric, batch_metric = metric_name("view", k), metric_name("batch", k)
            tally.add("model", view_metric, topk_hits(similarity, view.own, k))
            tally.add("model", batch_metric, topk_hits(batch_similarity, in_batch, k))
            tally.add("object_mean", view_metric, topk_hits(view.q @ mean, view.own, k))
            tally.add("object_mean", batch_metric, topk_hits(all_q @ mean, in_batch, k))
            tally.add("mask_prior", view_metric, topk_hits(view.coverage, view.own, k))
            tally.add("mask_prior", batch_metric, topk_hits(all_coverage, in_batch, k))
            tally.add("chance", view_metric, np.full(len(view.own), min(k, cells) / cells))
            tally.add("chance", batch_metric, np.full(len(view.own), min(k, size * cells) / (size * cells)))
            for row, cells_near in enumerate(decoys):
                if len(cells_near):
                    tally.add("neighbour_cell", view_metric,
                              np.mean(topk_hits(similarity[row], cells_near, k)))
                    tally.add("neighbour_cell", batch_metric,
                              np.mean(topk_hits(batch_similarity[row], index * cells + cells_near, k)))


# --- model and data ----------------------------------------------------------------------------


@dataclass
class HeldOutObject:
    """One held-out object's model outputs that do not depend on the view, and its views' data.

    Attributes:
        local_features: (1, D_l, L) the backbone's local features. centres: (L, 3).
        cloud: (N, 3) xyz. views, projs: (V, 4, 4). masks: (V, H, W) bool.
        image_local: (V, C, g, g) cached frozen image features.
    """

    object_id: str
    local_features: torch.Tensor
    centres: np.ndarray
    cloud: np.ndarray
    views: np.ndarray
    projs: np.ndarray
    masks: np.ndarray
    image_local: np.ndarray


def _read_objects(pretrained: Any, shards: Sequence[Path], features: Sequence[Path], device: str,
                  log: TextIO) -> list[HeldOutObject]:
    """Every object of ``shards``, with its backbone outputs computed once (eval mode)."""
    import h5py

    from picat.report.pretrained import same_image_backbone
    from picat.shards import open_shard, read_strings

    objects = []
    model = pretrained.model
    for shard_path, feature_path in zip(shards, features, strict=True):
        with open_shard(shard_path) as shard, h5py.File(feature_path, "r") as cache:
            cached = json.loads(cache.attrs.get("image_backbone", "{}"))
            if not same_image_backbone(pretrained.image_backbone, cached):
                recorded = pretrained.image_backbone
                raise ValueError(f"{feature_path} was encoded with image backbone {cached.get('name')} "
                                 f"({cached.get('weights')}), the checkpoint {pretrained.path} learned from "
                                 f"{recorded.get('name')} ({recorded.get('weights')})")
            ids = read_strings(shard["object_ids"])
            if read_strings(cache["object_ids"]) != ids:
                raise ValueError(f"{feature_path}: object ids differ from its shard {shard_path}; re-encode it")
            available = shard["points"].shape[1]
            if pretrained.n_points > available:
                raise ValueError(f"{shard_path}: the checkpoint used {pretrained.n_points} points, "
                                 f"the shard holds {available}")
            for row, object_id in enumerate(ids):
                points = shard["points"][row, : pretrained.n_points].astype(np.float32)
                inputs = points
                if pretrained.normals:
                    inputs = np.concatenate([points, shard["normals"][row, : pretrained.n_points]], axis=-1)
                with torch.no_grad():
                    _, local_features, centres = model.backbone.forward_features(
                        torch.from_numpy(np.ascontiguousarray(inputs, dtype=np.float32))[None].to(device))
                objects.append(HeldOutObject(
                    object_id=object_id, local_features=local_features, centres=centres[0].cpu().numpy(),
                    cloud=points, views=shard["view_matrices"][row].astype(np.float32),
                    projs=shard["proj_matrices"][row].astype(np.float32), masks=shard["masks"][row].astype(bool),
                    image_local=cache["local"][row].astype(np.float32)))
        print(f"[correspondence] {shard_path}: {len(ids)} held-out objects embedded", file=log, flush=True)
    return objects


@torch.no_grad()
def scored_view(pretrained: Any, item: HeldOutObject, view: int, device: str) -> ScoredView:
    """The embeddings of ``item`` seen from its ``view``-th camera, restricted to the scored centres."""
    from picat.pretrain.correspondence import project_to_cells

    model = pretrained.model
    view_matrix = torch.from_numpy(item.views[view])[None].to(device)
    z = model.point_local(item.local_features, view_matrix).transpose(1, 2)[0].float().cpu().numpy()  # (L, d)
    q_map = model.image_local(torch.from_numpy(item.image_local[view])[None].to(device).float())  # (1, d, g, g)
    grid = int(q_map.shape[-1])
    q = q_map.flatten(2).transpose(1, 2)[0].float().cpu().numpy()  # (G, d)
    visible, _ = visible_on_mask(item.centres, item.cloud, item.views[view], item.projs[view], item.masks[view])
    cells, valid = project_to_cells(torch.from_numpy(item.centres)[None].double(),
                                    torch.from_numpy(item.views[view])[None].double(),
                                    torch.from_numpy(item.projs[view])[None].double(), grid)
    usable = visible & valid[0].numpy()
    return ScoredView(z=z[usable], own=cells[0].numpy()[usable], q=q,
                      coverage=mask_coverage(item.masks[view], grid))


def _progress(batches: list, log: TextIO) -> Iterator[list]:
    """The batches, printing a progress line every tenth of them."""
    step = max(1, len(batches) // 10)
    for number, batch in enumerate(batches):
        yield batch
        if (number + 1) % step == 0 or number + 1 == len(batches):
            print(f"[correspondence] scored {number + 1}/{len(batches)} batches", file=log, flush=True)


def evaluate_correspondence(checkpoint: Path, shards: Sequence[Path], features: Sequence[Path], batch_size: int,
                            seed: int = 0, device: str = "cpu", log: TextIO = sys.stderr) -> dict[str, Any]:
    """The correspondence metric of one checkpoint on held-out shards (see the module docstring).

    Args:
        checkpoint: a ``picat pretrain`` checkpoint of a variant with the local heads.
        shards: held-out shard files (never read by pre-training). features: their encode caches.
        batch_size: B, object-views per batch of the batch task (at most the object count is used).
        seed: seeds the fixed batch composition (:func:`batch_plan`).

    Returns:
        A JSON-serialisable result: the checkpoint's facts, ``metrics`` (predictor -> metric ->
        percent), ``n`` (predictor -> metric -> scored centres), ``n_centres``,
        ``n_object_views`` (with at least one scored centre), ``n_objects``, ``n_views``,
        ``cells`` (G), ``batch_size`` (b used) and the shards read.
    """
    from picat.report.pretrained import load_pretrained

    shards, features = [Path(path) for path in shards], [Path(path) for path in features]
    if not shards:
        raise ValueError("the correspondence metric needs at least one held-out shard")
    if len(features) != len(shards):
        raise ValueError(f"got {len(features)} feature files for {len(shards)} held-out shards")
    pretrained = load_pretrained(Path(checkpoint), device)
    objects = _read_objects(pretrained, shards, features, device, log)
    if not objects:
        raise ValueError(f"the held-out shards {[str(path) for path in shards]} hold no objects")
    n_views = min(len(item.views) for item in objects)
    batches = batch_plan(len(objects), n_views, batch_size, seed)
    tally, grid = Tally(), None
    for batch in _progress(batches, log):
        views = [scored_view(pretrained, objects[obj], view, device) for obj, view, _ in batch]
        grid = int(round(np.sqrt(len(views[0].coverage))))
        score_batch(views, [scored for _, _, scored in batch], tally, grid)
    if not tally.object_views:
        raise ValueError(f"{checkpoint}: no local centre of any held-out object-view is visible in its image; "
                         "nothing to score")
    n = tally.n()
    return {
        "checkpoint": str(pretrained.path), "suite": pretrained.suite, "backbone": pretrained.backbone,
        "variant": pretrained.variant, "seed": pretrained.seed,
        "image_backbone": {key: pretrained.image_backbone.get(key) for key in ("name", "weights", "weights_sha256")},
        "similarity": "cosine", "cells": grid * grid, "batch_size": len(batches[0]), "batch_seed": seed,
        "top_k": list(TOP_K), "heldout_shards": [str(path) for path in shards],
        "n_objects": len(objects), "n_views": n_views, "n_object_views": tally.object_views,
        "n_centres": n["model"][metric_name("view", 1)],
        "metrics": tally.rates(), "n": n,
    }


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The numbers Figure 4's summary quotes: own-cell top-1/top-5 against the baselines, and n."""
    return {
        "checkpoint": result["checkpoint"], "cells": result["cells"], "batch_size": result["batch_size"],
        "n_centres": result["n_centres"], "n_object_views": result["n_object_views"],
        "n_objects": result["n_objects"],
        **{f"{predictor}_{metric}": result["metrics"][predictor][metric]
           for predictor in ("model", "object_mean", "mask_prior", "neighbour_cell", "chance")
           for metric in METRICS},
    }
