"""The correspondence metric (picat.report.correspondence) against hand computations, its tables,
and the held-out split of the corpus that it reads."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_figure4 import tiny_run  # noqa: F401  (the shared fixture: a shard, its cache, tiny checkpoints)

from picat.demo.recipes import demo_objects
from picat.geometry import look_at, perspective
from picat.manifests import MeshRecord, read_manifest, split_heldout
from picat.report.correspondence import (
    HeldOutObject,
    ScoredView,
    Tally,
    batch_plan,
    evaluate_correspondence,
    neighbour_cells,
    score_batch,
    scored_view,
    topk_hits,
    visible_on_mask,
)
from picat.report.correspondence_table import correspondence_long_rows, correspondence_table
from picat.report.figure4 import cell_ranks, embed, load_pretrained, plot_figure4, read_object_view
from picat.report.figure4_table import figure4_rows
from picat.report.paper_tables import LONG_COLUMNS
from picat.stages.corpus import HELDOUT_SEED_BASE, build_corpus, heldout_demo_objects

# --- top-k, batch retrieval and baselines by hand ------------------------------------------------


def test_topk_counts_higher_scores_and_splits_ties():
    scores = np.array([[0.9, 0.1, 0.5], [0.2, 0.8, 0.8], [0.3, 0.3, 0.3]])
    own = np.array([2, 1, 0])
    # Row 0: one candidate above -> rank 2. Row 1: one tie -> rank 1 or 2. Row 2: three-way tie.
    assert topk_hits(scores, own, 1).tolist() == pytest.approx([0.0, 0.5, 1 / 3])
    assert topk_hits(scores, own, 2).tolist() == pytest.approx([1.0, 1.0, 2 / 3])
    assert topk_hits(scores, own, 3).tolist() == pytest.approx([1.0, 1.0, 1.0])
    # One score row shared by every query (the object-mean and mask-prior predictors).
    assert topk_hits(np.array([0.1, 0.7, 0.4]), np.array([1, 2, 0]), 1).tolist() == [1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="k must be at least 1"):
        topk_hits(scores, own, 0)
    with pytest.raises(ValueError, match=r"own candidates must lie in \[0, 3\)"):
        topk_hits(scores, np.array([0, 3, 1]), 1)


def unit(*rows: tuple[float, float]) -> np.ndarray:
    array = np.array(rows, dtype=float)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def test_batch_retrieval_counts_other_objects_cells_as_negatives():
    # grid 2 -> G = 4. Object A's centre points along x; its own cell 0 is the best of A's cells
    # (cos 0.8) but object B's cell 1 points exactly along x (cos 1).
    a = ScoredView(z=unit((1, 0)), own=np.array([0]), q=unit((0.8, 0.6), (0, 1), (-1, 0), (0, -1)),
                   coverage=np.array([1.0, 1.0, 0.0, 0.0]))
    b = ScoredView(z=unit((0, 1)), own=np.array([3]), q=unit((0, -1), (1, 0), (-1, 0), (0.6, 0.8)),
                   coverage=np.array([0.0, 1.0, 1.0, 1.0]))
    tally = Tally()
    score_batch([a, b], [True, False], tally, grid=2)  # B: negatives only
    rates, n = tally.rates(), tally.n()
    assert tally.object_views == 1 and n["model"]["view_top1"] == 1 and n["model"]["batch_top1"] == 1
    assert rates["model"]["view_top1"] == 100.0  # among its own 4 cells
    assert rates["model"]["batch_top1"] == 0.0  # B's cell 1 beats it
    assert rates["model"]["batch_top5"] == 100.0  # rank 2 of 8
    assert rates["chance"]["view_top1"] == 25.0 and rates["chance"]["batch_top1"] == 12.5
    assert rates["chance"]["batch_top5"] == 62.5
    # Both scored: B's centre (0, 1): own cell 3 (cos 0.8), beaten by A's cell 1 (cos 1) in the batch.
    tally = Tally()
    score_batch([a, b], [True, True], tally, grid=2)
    assert tally.object_views == 2 and tally.rates()["model"]["batch_top1"] == 0.0
    assert tally.rates()["model"]["view_top1"] == 100.0


def test_each_baseline_on_a_hand_made_view():
    # Two centres along x and y, own cells 0 and 1. Cell 2 is the diagonal: the closest to their mean.
    view = ScoredView(z=unit((1, 0), (0, 1)), own=np.array([0, 1]), q=unit((1, 0), (0, 1), (1, 1), (-1, 0)),
                      coverage=np.array([1.0, 0.5, 1.0, 0.0]))
    tally = Tally()
    score_batch([view], [True], tally, grid=2)
    rates, n = tally.rates(), tally.n()
    assert rates["model"]["view_top1"] == 100.0
    # Object mean (0.5, 0.5): scores 0.5, 0.5, 0.71, -0.5 -> cell 2 first, cells 0 and 1 tied second.
    assert rates["object_mean"]["view_top1"] == 0.0
    assert rates["object_mean"]["view_top5"] == 100.0
    # Mask prior: coverage 1, 0.5, 1, 0. Own cell 0 ties cell 2 for first (1/2); own cell 1 is third (0).
    assert rates["mask_prior"]["view_top1"] == 25.0
    # Neighbour cell: object cells (>= half) are 0, 1, 2. Own 0 -> 1 and 2 (both at distance 1);
    # own 1 -> 0 (distance 1; 2 is at sqrt 2). Centre 0 ranks cell 1 and 2 at 3 and 2 (top-1: 0),
    # centre 1 ranks cell 0 tied with cell 3 (both cos 0) behind cells 1 and 2.
    assert neighbour_cells(0, np.array([1, 1, 1, 0], bool), 2).tolist() == [1, 2]
    assert neighbour_cells(1, np.array([1, 1, 1, 0], bool), 2).tolist() == [0]
    assert neighbour_cells(3, np.array([0, 0, 0, 1], bool), 2).tolist() == []
    assert rates["neighbour_cell"]["view_top1"] == 0.0 and n["neighbour_cell"]["view_top1"] == 2
    # Top-5 of 4 cells is certain; chance is k / G.
    assert rates["neighbour_cell"]["view_top5"] == 100.0
    assert rates["chance"]["view_top1"] == 25.0 and rates["chance"]["view_top5"] == 100.0
    # One view alone: the batch task is the view task.
    assert rates["model"]["batch_top1"] == rates["model"]["view_top1"]
    assert rates["mask_prior"]["batch_top1"] == rates["mask_prior"]["view_top1"]


def test_batches_score_every_object_view_once_with_distinct_objects():
    plan = batch_plan(n_objects=5, n_views=3, batch_size=2, seed=4)
    assert plan == batch_plan(5, 3, 2, seed=4) and plan != batch_plan(5, 3, 2, seed=5)
    scored = [(obj, view) for batch in plan for obj, view, query in batch if query]
    assert sorted(scored) == [(obj, view) for obj in range(5) for view in range(3)]
    for batch in plan:
        assert len(batch) == 2 and len({obj for obj, _, _ in batch}) == 2
    # 5 objects in batches of 2: each round's last batch holds one query and one filler.
    assert sum(not query for batch in plan for _, _, query in batch) == 3
    assert [len(batch) for batch in batch_plan(3, 2, 16, 0)] == [3, 3]  # B is capped at the object count


# --- which centres are scored -----------------------------------------------------------------


def test_invisible_and_out_of_image_centres_are_not_scored():
    view = look_at(np.array([0.0, 0.0, 2.5]), np.zeros(3), np.array([0.0, 1.0, 0.0]))
    proj = perspective(50.0)
    centres = np.array([
        [0.0, 0.0, 0.0],  # image centre, on the mask, in front: scored
        [0.0, 0.0, -0.5],  # straight behind the first: hidden
        [3.0, 0.0, 0.0],  # outside the image
        [0.5, 0.0, 0.0],  # in the image, off the mask
    ])
    mask = np.zeros((70, 70), bool)
    mask[30:40, 30:40] = True
    visible, uv = visible_on_mask(centres, centres, view, proj, mask)
    assert visible.tolist() == [True, False, False, False]
    assert uv[0] == pytest.approx([0.5, 0.5]) and uv[2, 0] > 1.0 and 0.5 < uv[3, 0] < 1.0
    # The metric keeps the first centre only, with its own cell (3, 3) = 24 and its embedding.
    latent = 3
    fake = SimpleNamespace(model=SimpleNamespace(
        point_local=lambda features, views: torch.arange(latent * 4, dtype=torch.float32).reshape(1, latent, 4),
        image_local=lambda maps: torch.ones(1, latent, 7, 7)))
    item = HeldOutObject("x", torch.zeros(1, 5, 4), centres, centres, view[None].astype(np.float32),
                         proj[None].astype(np.float32), mask[None], np.zeros((1, 5, 7, 7), np.float32))
    scored = scored_view(fake, item, 0, "cpu")
    assert scored.own.tolist() == [24] and scored.z.tolist() == [[0.0, 4.0, 8.0]] and scored.q.shape == (49, latent)
    assert scored.coverage[24] == 1.0 and scored.coverage.sum() == 1.0  # the mask is exactly cell (3, 3)


# --- on a real (tiny) checkpoint ----------------------------------------------------------------


def test_metric_on_a_tiny_checkpoint_matches_figure4s_ranks(tiny_run, tmp_path):  # noqa: F811
    shard, features, checkpoints = tiny_run
    checkpoint = checkpoints["dgcnn", "full"]
    result = evaluate_correspondence(checkpoint, [shard], [features], batch_size=4, seed=0, log=io.StringIO())
    assert result == evaluate_correspondence(checkpoint, [shard], [features], 4, 0, log=io.StringIO())
    assert result["n_objects"] == 5 and result["n_views"] == 20 and result["batch_size"] == 4
    assert result["cells"] == 49 and 0 < result["n_object_views"] <= 100
    metrics = result["metrics"]
    assert metrics["chance"]["view_top1"] == pytest.approx(100 / 49)
    assert metrics["chance"]["batch_top5"] == pytest.approx(100 * 5 / (4 * 49))
    # Independently of the metric's code path: figure4's per-view embedding (the backbone run
    # for each view) and its rank of each visible centre's own cell, over all object-views.
    pretrained = load_pretrained(checkpoint)
    from picat.pretrain.correspondence import project_to_cells

    ranks = []
    for view in range(20):
        for row in range(5):
            item = read_object_view(shard, features, row, view, pretrained.n_points, False, pretrained.image_backbone)
            z, q, centres, grid = embed(pretrained, item, None, "cpu")
            visible, _ = visible_on_mask(centres, item.points[:, :3], item.view, item.proj, item.mask)
            cells, valid = project_to_cells(torch.from_numpy(centres)[None].double(),
                                            torch.from_numpy(item.view)[None].double(),
                                            torch.from_numpy(item.proj)[None].double(), grid)
            usable = visible & valid[0].numpy()
            ranks += cell_ranks(z[usable] @ q.T, cells[0].numpy()[usable]).tolist()
    ranks = np.array(ranks)
    assert result["n_centres"] == len(ranks) == result["n"]["mask_prior"]["batch_top5"]
    assert metrics["model"]["view_top1"] == pytest.approx(100 * np.mean(ranks == 1), abs=1e-6)
    assert metrics["model"]["view_top5"] == pytest.approx(100 * np.mean(ranks <= 5), abs=1e-6)
    # Figure 4 quotes it, for its own checkpoint only.
    summary = plot_figure4(checkpoint, [shard], [features], tmp_path / "f.png", n_objects=2, correspondence=result)
    assert summary["correspondence"]["model_view_top1"] == metrics["model"]["view_top1"]
    assert summary["correspondence"]["chance_view_top5"] == metrics["chance"]["view_top5"]
    path = tmp_path / "figure4.json"
    path.write_text(json.dumps(summary, default=float))
    row = figure4_rows([path]).iloc[0]
    assert row["model_view_top1"] == metrics["model"]["view_top1"] and row["n_centres"] == result["n_centres"]
    other = {**result, "checkpoint": str(checkpoints["pointnext", "full"])}
    with pytest.raises(ValueError, match="correspondence result is of"):
        plot_figure4(checkpoint, [shard], [features], tmp_path / "g.png", n_objects=2, correspondence=other)


def test_pointnext_centres_and_a_checkpoint_without_local_heads(tiny_run):  # noqa: F811
    shard, features, checkpoints = tiny_run
    result = evaluate_correspondence(checkpoints["pointnext", "full"], [shard], [features], 16, log=io.StringIO())
    assert result["backbone"] == "pointnext" and result["batch_size"] == 5 and result["n_centres"] > 0
    with pytest.raises(ValueError, match="no local heads"):
        evaluate_correspondence(checkpoints["dgcnn", "no_local"], [shard], [features], 4, log=io.StringIO())
    with pytest.raises(ValueError, match="got 2 feature files for 1 held-out shards"):
        evaluate_correspondence(checkpoints["dgcnn", "full"], [shard], [features, features], 4, log=io.StringIO())


# --- tables -------------------------------------------------------------------------------------


def fake_result(path: Path, backbone: str, variant: str, seed: int, top1: float) -> Path:
    metrics = {predictor: {metric: top1 + offset for offset, metric in
                           enumerate(("view_top1", "view_top5", "batch_top1", "batch_top5"))}
               for predictor in ("model", "object_mean", "mask_prior", "neighbour_cell", "chance")}
    metrics["neighbour_cell"]["batch_top5"] = None  # nothing scored: NaN, not 0
    path.write_text(json.dumps({
        "suite": "demo", "backbone": backbone, "variant": variant, "seed": seed, "cells": 49, "batch_size": 16,
        "image_backbone": {"name": "efficientnet_lite0", "weights": "imagenet"}, "n_centres": 1000,
        "n_object_views": 480, "n_objects": 24, "metrics": metrics, "checkpoint": f"{backbone}/{variant}/{seed}"}))
    return path


def test_table_rows_average_seeds_and_are_marked_picat_only(tmp_path):
    paths = [fake_result(tmp_path / "a.json", "dgcnn", "full", 0, 10.0),
             fake_result(tmp_path / "b.json", "dgcnn", "full", 1, 20.0),
             fake_result(tmp_path / "c.json", "dgcnn", "no_pose", 0, 5.0)]
    wide = correspondence_table(paths)
    assert len(wide) == 2 * 5  # (full, no_pose) x 5 predictors
    full = wide[(wide["variant"] == "full") & (wide["predictor"] == "model")].iloc[0]
    assert full["view_top1"] == 15.0 and full["view_top1_std"] == pytest.approx(math.sqrt(50))
    assert full["n_seeds"] == 2 and full["seeds"] == "0 1" and full["n_centres"] == 1000
    assert "not in the paper" in full["source"]
    single = wide[(wide["variant"] == "no_pose") & (wide["predictor"] == "model")].iloc[0]
    assert single["view_top1"] == 5.0 and math.isnan(single["view_top1_std"]) and single["n_seeds"] == 1
    assert math.isnan(wide[wide["predictor"] == "neighbour_cell"]["batch_top5"].iloc[0])
    long = correspondence_long_rows(paths, LONG_COLUMNS)
    assert list(long.columns) == LONG_COLUMNS and set(long["table"]) == {"correspondence"}
    assert len(long) == 2 * 5 * 4 and long["paper_value"].isna().all()
    row = long[(long["variant"] == "full") & (long["metric"] == "batch_top1")
               & long["method"].str.contains("own embedding")].iloc[0]
    assert row["value"] == 17.0 and row["n_runs"] == 2
    assert row["method"] == "DGCNN+Pic@Point full: own embedding (picat)"
    assert all("not in the paper" in source for source in long["source"])
    with pytest.raises(ValueError, match="repeat seed"):
        correspondence_table([paths[0], fake_result(tmp_path / "d.json", "dgcnn", "full", 0, 1.0)])
    broken = tmp_path / "e.json"
    broken.write_text(json.dumps({"suite": "demo"}))
    with pytest.raises(ValueError, match=r"e\.json: correspondence result lacks key\(s\) backbone"):
        correspondence_table([broken])


# --- the held-out split of the corpus -----------------------------------------------------------


def test_demo_heldout_objects_are_disjoint_from_training_and_leave_it_unchanged(tmp_path):
    corpus = {"kind": "demo", "n_objects": 30, "seed": 0, "up_axis": "y"}
    build_corpus(corpus, 10, tmp_path / "plain", log=io.StringIO())
    with_heldout = {**corpus, "heldout_objects": 7}
    build_corpus(with_heldout, 10, tmp_path / "train", log=io.StringIO())
    build_corpus(with_heldout, 4, tmp_path / "heldout", log=io.StringIO(), heldout=True)
    plain = sorted((tmp_path / "plain/shards").glob("*.tsv"))
    train = sorted((tmp_path / "train/shards").glob("*.tsv"))
    assert [p.name for p in train] == [p.name for p in plain] == ["shard_00000.tsv", "shard_00001.tsv",
                                                                 "shard_00002.tsv"]
    for a, b in zip(plain, train, strict=True):  # the training shards do not change
        assert [(r.object_id, r.category) for r in read_manifest(a)] == [(r.object_id, r.category)
                                                                         for r in read_manifest(b)]
        assert all(Path(r.path).read_bytes() == Path(s.path).read_bytes()
                   for r, s in zip(read_manifest(a), read_manifest(b), strict=True))
    heldout = sorted((tmp_path / "heldout/shards").glob("*.tsv"))
    assert [p.name for p in heldout] == ["heldout_00000.tsv", "heldout_00001.tsv"]
    held_ids = {r.object_id for p in heldout for r in read_manifest(p)}
    train_ids = {r.object_id for p in train for r in read_manifest(p)}
    assert len(held_ids) == 7 and not held_ids & train_ids
    # Shape seeds: held-out ones above every training (uint32) and stand-in ([2**32, 2**33)) seed.
    held_seeds = {seed for _, _, seed in heldout_demo_objects(7, 0)}
    assert min(held_seeds) >= HELDOUT_SEED_BASE == 2**33
    assert not held_seeds & {seed for _, _, seed in demo_objects(30, 0)}
    # Different meshes, not only different names.
    held_meshes = {Path(r.path).read_bytes() for p in heldout for r in read_manifest(p)}
    assert not held_meshes & {Path(r.path).read_bytes() for p in train for r in read_manifest(p)}


def test_real_corpus_heldout_objects_are_drawn_by_hash_and_left_out_of_training():
    records = [MeshRecord(f"{synset}_{index:03d}", synset, f"/x/{index}") for synset in ("02691156", "03001627")
               for index in range(50)]
    train, held = split_heldout(records, 10)
    assert len(held) == 10 and len(train) == 90 and not {r.object_id for r in held} & {r.object_id for r in train}
    assert split_heldout(list(reversed(records)), 10)[1] == sorted(held, key=lambda r: r.object_id, reverse=True)
    assert split_heldout(records, 0) == (records, [])
    with pytest.raises(ValueError, match="cannot hold out 100"):
        split_heldout(records, 100)


def test_heldout_shards_never_reach_pretraining(tmp_path):
    """A dry run of the real workflow (after its two corpus checkpoints) on a tiny config."""
    import subprocess
    import sys

    import yaml

    def with_defaults(tiny: dict, full: dict) -> dict:
        """``tiny`` with any key it lacks taken from ``full`` (a dry run only needs a valid config)."""
        return {**full, **{key: with_defaults(value, full[key]) if isinstance(value, dict) and key in full
                           and isinstance(full[key], dict) else value for key, value in tiny.items()}}

    repo = Path(__file__).resolve().parent.parent
    config = yaml.safe_load((repo / "config.yaml").read_text())
    tiny = yaml.safe_load((Path(__file__).with_name("workflow_tiny_demo.yaml")).read_text())["demo"]
    config["demo"] = with_defaults(tiny, config["demo"])
    config["render_env"] = str(tmp_path / "no-render-env")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))

    def snakemake(*args: str) -> str:
        command = [sys.executable, "-m", "snakemake", "--snakefile", str(repo / "Snakefile"), "--directory",
                   str(tmp_path), "--configfile", str(tmp_path / "config.yaml"), "--cores", "1", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    snakemake("results/corpus/demo", "results/heldout_corpus/demo")
    plan = snakemake("-n", "--printshellcmds", "pretrain", "results/tables.csv")
    pretrain_commands = [line for line in plan.splitlines() if "picat pretrain" in line]
    assert pretrain_commands and all("heldout" not in line for line in pretrain_commands)
    assert all("shard_00000" in line for line in pretrain_commands)
    metric_commands = [line for line in plan.splitlines() if "picat correspondence" in line]
    assert metric_commands and all("heldout_00000" in line and "shard_0" not in line for line in metric_commands)
    figure_commands = [line for line in plan.splitlines() if "picat figure4" in line]
    assert figure_commands and all("heldout_00000" in line and "shard_0" not in line for line in figure_commands)
    held = {r.object_id for p in (tmp_path / "results/heldout_corpus/demo/shards").glob("*.tsv")
            for r in read_manifest(p)}
    train = {r.object_id for p in (tmp_path / "results/corpus/demo/shards").glob("*.tsv") for r in read_manifest(p)}
    assert held and train and not held & train
