"""Figure 4: local 2D-3D correspondences learned in Pic@Point pre-training.

For a few objects (one rendered view each) the figure shows, per row,

1. the point cloud seen from that view's camera (a 2D projection, shaded by depth) with two
   exemplar points highlighted in two colours;
2. and 3. for each exemplar, the cosine similarity between its local point embedding z_l
   (local point head, conditioned on the view's pose as in training) and the local image
   embeddings q_ij of the g x g cells of that view (local image head on the frozen 2D
   backbone's feature map), upsampled over the render. The cell the exemplar projects into
   is outlined and the projection itself marked, so the correspondence can be judged.

Cosine is the similarity the local InfoNCE loss uses (both embeddings are L2-normalised;
the loss divides it by the temperature). All heatmaps share one colour scale.

Exemplars are local centres (the points that have local features: DGCNN's FPS centres when
``local_centres`` is set, PointNeXt's last-stage centres) that are visible in the view and lie
on the object's mask, preferably in cells that are at least half object; of those, the pair
farthest apart in the image is taken (a rule fixed before any similarity is seen). The summary
reports, for each exemplar, the similarity at its own cell and that cell's rank among all
g*g cells (1 = most similar; chance is (g*g + 1) / 2), plus the same rank averaged over every
visible centre of the object, a less anecdotal number.

The workflow draws the figure from the corpus's held-out shards (objects pre-training never
read), and its summary and caption quote the correspondence metric of the same checkpoint
(:mod:`picat.report.correspondence`: own-cell top-1/top-5 over every visible centre of every
held-out object-view, against its baselines), so that the figure's claim is a number.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import matplotlib

matplotlib.use("Agg")  # headless: the workflow runs without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.image import AxesImage  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from picat.atomic import atomic_path  # noqa: E402
from picat.geometry import project_points  # noqa: E402
from picat.pretrain.correspondence import project_to_cells  # noqa: E402
from picat.report.correspondence import headline, mask_coverage, visible_on_mask  # noqa: E402
from picat.report.pretrained import PretrainedModel, load_pretrained, same_image_backbone  # noqa: E402, F401
from picat.shards import open_shard, read_strings  # noqa: E402

EXEMPLAR_COLOURS = ("#e6194b", "#1e90ff")  # red and blue: distinct on the heatmap's colour map
HEATMAP_CMAP = "viridis"
# Exemplars are taken among centres whose cell is at least this much object (when two exist).
MIN_CELL_COVERAGE = 0.5


@dataclass(frozen=True)
class ObjectView:
    """One object in one view, with everything the figure needs (numpy, shapes below)."""

    shard: Path
    row: int
    view_index: int
    object_id: str
    category: str
    points: np.ndarray  # (N, 3 or 6) model input
    image: np.ndarray  # (H, W, 3) uint8 render
    mask: np.ndarray  # (H, W) bool object pixels
    view: np.ndarray  # (4, 4) M_view
    proj: np.ndarray  # (4, 4) M_proj
    image_local: np.ndarray | None  # (C, g, g) cached frozen features, None without a cache


def choose_objects(shards: Sequence[Path], n_objects: int, seed: int) -> list[tuple[int, int, int]]:
    """Pick (shard number, row, view) of ``n_objects`` objects, deterministically from ``seed``.

    Categories are visited in a seeded random order, one seeded-random object each, so the
    rows show distinct categories whenever the shards hold at least ``n_objects`` of them.
    """
    if n_objects < 1:
        raise ValueError(f"n_objects must be at least 1, got {n_objects}")
    by_category: dict[str, list[tuple[int, int]]] = defaultdict(list)
    n_views = None
    for number, path in enumerate(shards):
        with open_shard(path) as shard:
            for row, category in enumerate(read_strings(shard["categories"])):
                by_category[category].append((number, row))
            views = shard["view_matrices"].shape[1]
            n_views = views if n_views is None else min(n_views, views)
    total = sum(len(members) for members in by_category.values())
    if total < n_objects:
        raise ValueError(f"the shards hold {total} objects, fewer than n_objects={n_objects}")
    rng = np.random.default_rng(seed)
    queues = {category: [members[i] for i in rng.permutation(len(members))]
              for category, members in sorted(by_category.items())}
    order = [sorted(queues)[i] for i in rng.permutation(len(queues))]
    picked: list[tuple[int, int]] = []
    while len(picked) < n_objects:  # round robin over categories: distinct ones first
        for category in order:
            if queues[category] and len(picked) < n_objects:
                picked.append(queues[category].pop(0))
    views = rng.integers(0, n_views, size=n_objects)
    return [(number, row, int(view)) for (number, row), view in zip(picked, views, strict=True)]


def read_object_view(shard_path: Path, feature_path: Path | None, row: int, view: int, n_points: int,
                     normals: bool, image_backbone: dict[str, Any]) -> ObjectView:
    """One object's cloud (first ``n_points`` samples, as in pre-training), render and cameras."""
    with open_shard(shard_path) as shard:
        available = shard["points"].shape[1]
        if n_points > available:
            raise ValueError(f"{shard_path}: the checkpoint used {n_points} points, the shard holds {available}")
        points = shard["points"][row, :n_points]
        if normals:
            points = np.concatenate([points, shard["normals"][row, :n_points]], axis=-1)
        object_id = read_strings(shard["object_ids"])[row]
        item = dict(shard=Path(shard_path), row=row, view_index=view, object_id=object_id,
                    category=read_strings(shard["categories"])[row], points=points.astype(np.float32),
                    image=shard["images"][row, view], mask=shard["masks"][row, view].astype(bool),
                    view=shard["view_matrices"][row, view].astype(np.float32),
                    proj=shard["proj_matrices"][row, view].astype(np.float32), image_local=None)
    if feature_path is not None:
        with h5py.File(feature_path, "r") as cache:
            cached_backbone = json.loads(cache.attrs.get("image_backbone", "{}"))
            if not same_image_backbone(image_backbone, cached_backbone):
                raise ValueError(f"{feature_path} was encoded with image backbone {cached_backbone.get('name')} "
                                 f"({cached_backbone.get('weights')}), the checkpoint learned from "
                                 f"{image_backbone.get('name')} ({image_backbone.get('weights')})")
            if read_strings(cache["object_ids"])[row] != object_id:
                raise ValueError(f"{feature_path}: object ids differ from its shard {shard_path}; re-encode it")
            item["image_local"] = cache["local"][row, view].astype(np.float32)
    return ObjectView(**item)


def farthest_pair(uv: np.ndarray, candidates: np.ndarray) -> tuple[int, int]:
    """The two candidate indices whose image positions are farthest apart (first pair on ties).

    Args:
        uv: (L, 2) positions. candidates: (K,) indices into uv, K >= 2.
    """
    positions = uv[candidates]
    distances = np.linalg.norm(positions[:, None] - positions[None, :], axis=-1)
    first, second = np.unravel_index(int(np.argmax(distances)), distances.shape)
    return int(candidates[min(first, second)]), int(candidates[max(first, second)])


def cell_ranks(similarity: np.ndarray, cells: np.ndarray) -> np.ndarray:
    """Rank of each row's own cell, 1 = most similar (ties count in its favour).

    Args:
        similarity: (K, G) similarity of K local embeddings to G cells. cells: (K,) own cell.

    Returns:
        (K,) int ranks in 1..G.
    """
    own = similarity[np.arange(len(cells)), cells]
    return 1 + (similarity > own[:, None]).sum(axis=1)


@torch.no_grad()
def embed(pretrained: PretrainedModel, item: ObjectView, encoder: torch.nn.Module | None,
          device: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Local embeddings of the cloud and of the image cells, as the model computes them.

    Returns:
        z (L, d) local point embeddings, q (G, d) cell embeddings (row-major), centres (L, 3)
        and the grid side g (G = g*g).
    """
    model = pretrained.model
    points = torch.from_numpy(item.points)[None].to(device)
    view = torch.from_numpy(item.view)[None].to(device)
    if item.image_local is not None:
        image_local = torch.from_numpy(item.image_local)[None].to(device)
    else:
        assert encoder is not None
        image_local, _ = encoder(torch.from_numpy(np.ascontiguousarray(item.image))[None].to(device))
    _, local_features, centres = model.backbone.forward_features(points)
    z = model.point_local(local_features, view).transpose(1, 2)[0]
    q = model.image_local(image_local.float())
    grid = int(q.shape[-1])
    return z.cpu().numpy(), q.flatten(2).transpose(1, 2)[0].cpu().numpy(), centres[0].cpu().numpy(), grid


def _image_encoder(pretrained: PretrainedModel, device: str) -> torch.nn.Module:
    """The checkpoint's frozen 2D backbone, for shards without a feature cache."""
    from picat.models.image import ImageBackboneSpec, build_image_backbone

    recorded = pretrained.image_backbone
    if "name" not in recorded or "weights" not in recorded:
        raise ValueError(f"{pretrained.path}: no image backbone recorded; pass the feature caches instead")
    encoder = build_image_backbone(ImageBackboneSpec(recorded["name"], recorded["weights"]))
    if not same_image_backbone(recorded, encoder.describe()):
        raise ValueError(f"{pretrained.path}: the image backbone weights found here differ from the ones it "
                         f"learned from (sha256 {recorded.get('weights_sha256')}); pass its feature caches instead")
    return encoder.to(device)


def analyse_object(pretrained: PretrainedModel, item: ObjectView, encoder: torch.nn.Module | None,
                   device: str) -> dict[str, Any]:
    """Exemplars, heatmaps and ranks of one object view (numpy arrays for plotting included)."""
    z, q, centres, grid = embed(pretrained, item, encoder, device)
    cloud = item.points[:, :3]
    visible, uv = visible_on_mask(centres, cloud, item.view, item.proj, item.mask)
    cells, valid = project_to_cells(torch.from_numpy(centres)[None].double(),
                                    torch.from_numpy(item.view)[None].double(),
                                    torch.from_numpy(item.proj)[None].double(), grid)
    usable = np.flatnonzero(visible & valid[0].numpy())
    if len(usable) < 2:
        raise ValueError(f"{item.shard}: object {item.object_id} view {item.view_index}: fewer than two visible "
                         f"local centres ({len(usable)}), no exemplar pair")
    similarity = z @ q.T  # (L, G) cosine: both sides are L2-normalised
    own_cells = cells[0].numpy()
    ranks = cell_ranks(similarity[usable], own_cells[usable])
    # Exemplars from centres whose cell mostly shows the object: the farthest pair overall
    # sits on the silhouette, in cells that are mostly background. Chosen before looking at
    # any similarity, so the exemplars' ranks are not selected for.
    coverage = mask_coverage(item.mask, grid)
    covered = usable[coverage[own_cells[usable]] >= MIN_CELL_COVERAGE]
    # Baseline that separates "matches its own cell" from "prefers object over background":
    # the mean rank of a random object cell (>= half object) under the same similarities.
    object_cells = np.flatnonzero(coverage >= MIN_CELL_COVERAGE)
    object_cell_rank = float(np.mean([cell_ranks(similarity[usable], np.full(len(usable), cell)).mean()
                                      for cell in object_cells])) if len(object_cells) else float("nan")
    exemplars = []
    for number, centre in enumerate(farthest_pair(uv, covered if len(covered) >= 2 else usable)):
        own = int(own_cells[centre])
        exemplars.append({
            "exemplar": number, "centre_index": centre, "xyz": centres[centre].round(4).tolist(),
            "uv": uv[centre].round(4).tolist(), "cell": own, "similarity": float(similarity[centre, own]),
            "best_similarity": float(similarity[centre].max()),
            "rank": int(cell_ranks(similarity[centre][None], np.array([own]))[0]),
            "heatmap": similarity[centre].reshape(grid, grid),
        })
    return {"item": item, "grid": grid, "uv": uv, "centres": centres, "exemplars": exemplars,
            "visible_centres": int(len(usable)), "visible_mean_rank": float(ranks.mean()),
            "object_cell_mean_rank": object_cell_rank}


def _draw_cloud(axes: plt.Axes, analysed: dict[str, Any]) -> None:
    """The cloud seen from the camera (near points dark), exemplars as large coloured dots."""
    item = analysed["item"]
    cloud_uv, _ = project_points(item.points[:, :3], item.view, item.proj)
    depth = -(np.c_[item.points[:, :3], np.ones(len(item.points))] @ item.view.astype(np.float64).T)[:, 2]
    order = np.argsort(-depth)  # far points first, near ones drawn on top
    height, width = item.image.shape[:2]
    axes.scatter(cloud_uv[order, 0] * width, cloud_uv[order, 1] * height, c=depth[order], cmap="Greys_r", s=3,
                 linewidths=0)
    for exemplar, colour in zip(analysed["exemplars"], EXEMPLAR_COLOURS, strict=True):
        u, v = analysed["uv"][exemplar["centre_index"]]
        axes.scatter([u * width], [v * height], s=90, c=colour, edgecolors="white", linewidths=1.2, zorder=3)
    axes.set_xlim(0, width)
    axes.set_ylim(height, 0)
    axes.set_aspect("equal")
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(f"{item.category} ({item.object_id}), view {item.view_index}\n"
                   f"{len(analysed['centres'])} local centres, {analysed['visible_centres']} visible", fontsize=7)


def _draw_heatmap(axes: plt.Axes, analysed: dict[str, Any], number: int, limits: tuple[float, float]) -> AxesImage:
    """Render with the exemplar's cell similarities blended over it; returns the heatmap artist."""
    item, grid = analysed["item"], analysed["grid"]
    exemplar, colour = analysed["exemplars"][number], EXEMPLAR_COLOURS[number]
    height, width = item.image.shape[:2]
    axes.imshow(item.image)
    # Bilinear over the image extent: each cell's value sits at the cell's centre.
    artist = axes.imshow(exemplar["heatmap"], cmap=HEATMAP_CMAP, alpha=0.6, extent=(0, width, height, 0),
                         interpolation="bilinear", vmin=limits[0], vmax=limits[1])
    row, col = divmod(exemplar["cell"], grid)
    cell_h, cell_w = height / grid, width / grid
    axes.add_patch(Rectangle((col * cell_w, row * cell_h), cell_w, cell_h, fill=False, edgecolor=colour, linewidth=1.5))
    u, v = exemplar["uv"]
    axes.scatter([u * width], [v * height], marker="*", s=160, c=colour, edgecolors="white", linewidths=1.0, zorder=3)
    axes.set_xlim(0, width)
    axes.set_ylim(height, 0)
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_title(f"exemplar {number + 1}: cos {exemplar['similarity']:.2f} at its cell "
                   f"(max {exemplar['best_similarity']:.2f}), rank {exemplar['rank']}/{grid * grid}", fontsize=7)
    return artist


def _caption(pretrained: PretrainedModel, correspondence: dict[str, Any] | None = None) -> str:
    image = pretrained.image_backbone
    sha = str(image.get("weights_sha256") or "")[:12]
    weights = f"{image.get('name', '?')} weights {image.get('weights', '?')}" + (f" (sha256 {sha}...)" if sha else "")
    note = (f"{pretrained.suite} suite" if pretrained.suite == "paper"
            else f"{pretrained.suite} suite: NOT a paper reproduction")
    return (f"Figure 4 (picat): local 2D-3D correspondences; {note}\n"
            f"backbone {pretrained.backbone}, variant {pretrained.variant}, seed {pretrained.seed}; "
            f"frozen image features: {weights}\n"
            "left: cloud from the view's camera (near points dark), exemplars in colour; "
            "middle/right: cosine similarity\n"
            "of the exemplar's local embedding to each image cell "
            "(outlined: the cell it projects into; star: its projection)"
            + ("" if correspondence is None else "\n" + _correspondence_line(correspondence)))


def _correspondence_line(numbers: dict[str, Any]) -> str:
    """The correspondence metric's headline (:func:`picat.report.correspondence.headline`) as a caption line."""
    def percent(key: str) -> str:
        value = numbers.get(key)
        return "n/a" if value is None else f"{value:.1f}"

    return (f"held-out objects: own cell top-1/top-5 among {numbers['cells']} cells {percent('model_view_top1')}/"
            f"{percent('model_view_top5')}% (object-mean {percent('object_mean_view_top1')}/"
            f"{percent('object_mean_view_top5')}, mask prior {percent('mask_prior_view_top1')}/"
            f"{percent('mask_prior_view_top5')}, chance {percent('chance_view_top1')}/{percent('chance_view_top5')}; "
            f"{numbers['n_centres']} centres, {numbers['n_object_views']} object-views)")


def plot_figure4(checkpoint: Path, shards: Sequence[Path], features: Sequence[Path] | None, out_png: Path,
                 n_objects: int = 3, seed: int = 0, device: str = "cpu",
                 correspondence: dict[str, Any] | None = None) -> dict[str, Any]:
    """Plot Figure 4 to ``out_png`` (written atomically) and return its numbers.

    Args:
        checkpoint: a ``picat pretrain`` checkpoint with the local heads (not ``no_local``).
        shards: shard files to draw objects from.
        features: their feature caches (same order), or None to run the checkpoint's frozen
            image backbone on the renders.
        n_objects: rows of the figure; objects are picked with ``seed`` (distinct categories first).

    Returns:
        A JSON-serialisable summary: checkpoint facts, ``objects`` (one entry per row, with its
        two ``exemplars``: centre index, xyz, uv, own cell, cosine similarity there, the best
        similarity over cells and the own cell's rank in 1..g*g), ``mean_rank`` over all
        exemplars, ``visible_mean_rank`` over every visible centre, ``chance_rank`` ((g*g + 1) / 2)
        and ``object_cell_mean_rank``: the mean rank, for the same visible centres, of a cell that is
        at least half object (a visible centre ranking its own cell better than this localises
        within the object, not only object against background); with ``correspondence`` (the
        correspondence metric's result for the same checkpoint,
        :func:`picat.report.correspondence.evaluate_correspondence`) also ``correspondence``:
        its headline (own-cell top-1/top-5 against the baselines, with n), quoted in the caption.

    Raises:
        ValueError: ``correspondence`` was measured on another checkpoint.
    """
    shards = [Path(path) for path in shards]
    if not shards:
        raise ValueError("plot_figure4 needs at least one shard")
    if features is not None and len(features) != len(shards):
        raise ValueError(f"got {len(features)} feature files for {len(shards)} shards")
    pretrained = load_pretrained(checkpoint, device)
    numbers = None
    if correspondence is not None:
        if Path(correspondence["checkpoint"]).resolve() != pretrained.path.resolve():
            raise ValueError(f"the correspondence result is of {correspondence['checkpoint']}, "
                             f"Figure 4 draws {pretrained.path}")
        numbers = headline(correspondence)
    encoder = _image_encoder(pretrained, device) if features is None else None
    analysed = []
    for number, row, view in choose_objects(shards, n_objects, seed):
        item = read_object_view(shards[number], Path(features[number]) if features is not None else None, row, view,
                                pretrained.n_points, pretrained.normals, pretrained.image_backbone)
        analysed.append(analyse_object(pretrained, item, encoder, device))
    heatmaps = np.stack([exemplar["heatmap"] for entry in analysed for exemplar in entry["exemplars"]])
    limits = (float(heatmaps.min()), float(heatmaps.max()))
    figure, axes = plt.subplots(len(analysed), 3, figsize=(10, 3.3 * len(analysed) + 1.2), squeeze=False,
                                constrained_layout=True)
    try:
        artist = None
        for row_axes, entry in zip(axes, analysed, strict=True):
            _draw_cloud(row_axes[0], entry)
            for number in range(2):
                artist = _draw_heatmap(row_axes[1 + number], entry, number, limits)
        figure.colorbar(artist, ax=axes[:, 1:].ravel().tolist(), shrink=0.8,
                        label="cosine similarity, local point vs image cell embedding")
        figure.suptitle(_caption(pretrained, numbers), fontsize=8)
        with atomic_path(Path(out_png)) as temporary:
            figure.savefig(temporary, format="png", dpi=120)
    finally:
        plt.close(figure)
    summary = _summary(pretrained, analysed)
    if numbers is not None:
        summary["correspondence"] = numbers
    return summary


def _summary(pretrained: PretrainedModel, analysed: list[dict[str, Any]]) -> dict[str, Any]:
    objects = []
    for entry in analysed:
        item = entry["item"]
        objects.append({
            "object_id": item.object_id, "category": item.category, "shard": str(item.shard), "row": item.row,
            "view": item.view_index, "visible_centres": entry["visible_centres"],
            "visible_mean_rank": entry["visible_mean_rank"], "object_cell_mean_rank": entry["object_cell_mean_rank"],
            "exemplars": [{key: value for key, value in exemplar.items() if key != "heatmap"}
                          for exemplar in entry["exemplars"]],
        })
    grid = analysed[0]["grid"]
    ranks = [exemplar["rank"] for entry in objects for exemplar in entry["exemplars"]]
    return {
        "checkpoint": str(pretrained.path), "suite": pretrained.suite, "backbone": pretrained.backbone,
        "variant": pretrained.variant, "seed": pretrained.seed,
        "image_backbone": {key: pretrained.image_backbone.get(key) for key in ("name", "weights", "weights_sha256")},
        "similarity": "cosine", "cells": grid * grid, "objects": objects,
        "mean_rank": float(np.mean(ranks)),
        "visible_mean_rank": float(np.mean([entry["visible_mean_rank"] for entry in objects])),
        "object_cell_mean_rank": float(np.nanmean([entry["object_cell_mean_rank"] for entry in objects])),
        "chance_rank": (grid * grid + 1) / 2,
    }
