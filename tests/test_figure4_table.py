"""Figure 4's exemplar ranks collated into results/tables/figure4.csv (picat tables --figure4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from picat.report.figure4_table import COLUMNS, figure4_rows


def write_summary(path: Path, backbone: str, mean_rank: float, **changes) -> Path:
    summary = {"checkpoint": f"results/pretrain/demo/{backbone}/full/seed0/checkpoint.pt", "suite": "demo",
               "backbone": backbone, "variant": "full", "seed": 0,
               "image_backbone": {"name": "efficientnet_lite0", "weights": "imagenet", "weights_sha256": "abc"},
               "similarity": "cosine", "cells": 49, "objects": [{"object_id": "a"}, {"object_id": "b"}],
               "mean_rank": mean_rank, "visible_mean_rank": 9.0, "object_cell_mean_rank": 7.5, "chance_rank": 25.0}
    summary.update(changes)
    path.write_text(json.dumps(summary))
    return path


def test_one_row_per_summary_in_order_with_suite_and_weights(tmp_path):
    paths = [write_summary(tmp_path / "d.json", "dgcnn", 5.5), write_summary(tmp_path / "p.json", "pointnext", 6.5)]
    table = figure4_rows(paths)
    assert list(table.columns) == list(COLUMNS)
    assert table["backbone"].tolist() == ["dgcnn", "pointnext"]
    assert table["exemplar_mean_rank"].tolist() == [5.5, 6.5]
    assert table["objects"].tolist() == [2, 2]
    assert set(table["suite"]) == {"demo"} and set(table["image_weights"]) == {"imagenet"}


def test_a_summary_without_a_key_names_the_file_and_the_key(tmp_path):
    path = write_summary(tmp_path / "d.json", "dgcnn", 5.5)
    content = json.loads(path.read_text())
    del content["chance_rank"]
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=r"d\.json.*chance_rank"):
        figure4_rows([path])


def test_a_broken_summary_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{")
    with pytest.raises(ValueError, match=r"broken\.json"):
        figure4_rows([path])
