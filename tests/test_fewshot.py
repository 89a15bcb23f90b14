"""The few-shot linear probe (picat-only): seeded per-category draws, mean/std over draws against
hand computations, a C rule blind to the test split, "all" = the svm protocol, short categories
recorded, the record format and the picat-only table."""

from __future__ import annotations

import copy
import io
import json
import math
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from picat.cli import build_parser
from picat.config import ConfigError, validate_config
from picat.datasets import write_modelnet40_h5
from picat.downstream.fewshot import FewshotSettings, draw_indices, fit_fixed_c, probe
from picat.downstream.records import ResultFileError, fewshot_metric, fewshot_shots, make_record, validate_record
from picat.downstream.svm import SvmSettings, fit_and_score
from picat.report.fewshot_table import NOTE, fewshot_long_rows, fewshot_wide_table, write_fewshot_table
from picat.report.paper_tables import LONG_COLUMNS, write_summary_tables
from picat.report.results import load_results, summarise
from picat.stages.fewshot import run_fewshot

REPO = Path(__file__).resolve().parent.parent
TINY_DGCNN = {"k": 4, "emb_dims": 16, "local_centres": 8}


# --- draws ----------------------------------------------------------------------------------

LABELS = np.array([0, 1, 0, 2, 0, 1, 0, 1, 0, 2, 0, 1])  # class 0: 6 objects, class 1: 4, class 2: 2


def test_draws_take_k_distinct_objects_per_category_by_the_documented_generator():
    indices, short = draw_indices(LABELS, 3, 3, seed=7, draw=2)
    # By hand: one generator default_rng([seed, k, draw]); classes in label order; choice without replacement.
    rng = np.random.default_rng([7, 3, 2])
    expected = np.sort(np.r_[rng.choice(np.flatnonzero(LABELS == 0), 3, replace=False),
                             rng.choice(np.flatnonzero(LABELS == 1), 3, replace=False),
                             np.flatnonzero(LABELS == 2)])
    np.testing.assert_array_equal(indices, expected)
    assert len(set(indices.tolist())) == len(indices) == 8  # without replacement: 3 + 3 + 2 (class 2 has only 2)
    assert np.bincount(LABELS[indices]).tolist() == [3, 3, 2]
    assert short == {2: 2}  # the category short of k is reported, with what it has


def test_draws_are_deterministic_per_seed_and_differ_across_draws_and_seeds():
    def draw(seed: int, index: int) -> tuple[int, ...]:
        return tuple(draw_indices(LABELS, 3, 2, seed, index)[0].tolist())

    assert draw(0, 0) == draw(0, 0)
    assert len({draw(0, index) for index in range(6)}) > 1  # the draw index changes the draw
    assert len({draw(seed, 0) for seed in range(6)}) > 1  # so does the seed
    # And the shot count is part of the seed: 1-shot draws are not the first objects of 2-shot draws.
    assert draw_indices(LABELS, 3, 1, 0, 0)[0].tolist() != sorted(draw(0, 0))[:3]


def test_a_category_without_training_objects_is_reported_short():
    indices, short = draw_indices(np.array([0, 0, 1, 1]), 3, 1, 0, 0)
    assert short == {2: 0} and np.bincount(np.array([0, 0, 1, 1])[indices]).tolist() == [1, 1]


# --- fits and scores against hand computations ----------------------------------------------

# 1-D features: two classes, two training objects each. With one object per class (k = 1) the
# linear SVM's boundary is the midpoint of the two (hard margin; the standardisation is affine,
# so the midpoint stays), which makes each draw's test accuracy a hand computation.
TRAIN_X = np.array([[0.0], [2.0], [10.0], [12.0]])
TRAIN_Y = np.array([0, 0, 1, 1])
TEST_X = np.array([[1.0], [5.5], [6.5], [11.0]])
TEST_Y = np.array([0, 0, 0, 1])


def hand_accuracy(indices: np.ndarray) -> float:
    boundary = TRAIN_X[indices, 0].mean()
    return 100.0 * float(np.mean((TEST_X[:, 0] > boundary).astype(int) == TEST_Y))


def test_mean_and_std_over_draws_match_the_hand_computed_midpoint_rule():
    settings = FewshotSettings(shots=(1,), draws=8)
    row = probe(TRAIN_X, TRAIN_Y, TEST_X, TEST_Y, ["a", "b"], settings, seed=3, log=io.StringIO())["1"]
    expected = [hand_accuracy(draw_indices(TRAIN_Y, 2, 1, 3, draw)[0]) for draw in range(8)]
    assert len(set(expected)) > 1  # the draws give different accuracies (boundary 5, 6 or 7: 50, 75, 100%)
    assert row["accuracies"] == pytest.approx(expected)
    assert row["mean"] == pytest.approx(statistics.fmean(expected))
    assert row["std"] == pytest.approx(statistics.stdev(expected))  # sample std over draws (ddof=1)
    assert row["n_draws"] == 8 and row["n_train"] == [2] * 8 and row["short_categories"] == {}
    assert row["c"] == [1.0] * 8 and all(row["hard_margin"])


def test_fixed_c_fit_standardises_on_the_training_draw_only():
    # Train (0, 0) vs (2, 2): standardised on them, the hard-margin boundary is the bisector
    # x + y = 2, so (3, 0.5) is class 1 and (-500, 3) class 0 (by hand). A scaler that also saw
    # the test features (x spread over hundreds) would squash x and cut near y = 1 instead: 0%.
    test_x, test_y = np.array([[3.0, 0.5], [-500.0, 3.0]]), np.array([1, 0])
    accuracy, hard = fit_fixed_c(np.array([[0.0, 0.0], [2.0, 2.0]]), np.array([0, 1]), test_x, test_y, c=1.0)
    assert accuracy == 100.0 and hard


def test_small_c_is_reported_as_not_hard_margin():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(0, 1, (20, 3)), rng.normal(0.3, 1, (20, 3))]
    y = np.r_[np.zeros(20, int), np.ones(20, int)]
    assert fit_fixed_c(x, y, x, y, c=1e-4)[1] is False  # overlapping classes: coefficients at the bound


def noisy_features(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, (3, 8))
    train_y = np.repeat(np.arange(3), 12)
    test_y = np.repeat(np.arange(3), 10)
    return (centres[train_y] + rng.normal(0, 1.5, (36, 8)), train_y,
            centres[test_y] + rng.normal(0, 1.5, (30, 8)), test_y)


def test_the_c_rule_never_reads_the_test_labels():
    train_x, train_y, test_x, test_y = noisy_features()
    settings = FewshotSettings(shots=(1, 5, "all"), draws=4, c_grid=(1e-4, 1e-2, 1.0), folds=3)
    result = probe(train_x, train_y, test_x, test_y, "abc", settings, seed=1, log=io.StringIO())
    # Test labels shuffled across objects, and every label renamed (0 -> 1 -> 2 -> 0).
    for changed in (np.random.default_rng(9).permutation(test_y), (test_y + 1) % 3):
        other = probe(train_x, train_y, test_x, changed, "abc", settings, seed=1, log=io.StringIO())
        for shots in ("1", "5", "all"):
            assert result[shots]["c"] == other[shots]["c"]
            assert result[shots]["n_train"] == other[shots]["n_train"]
        assert result["all"]["cv_scores"] == other["all"]["cv_scores"]
        assert result["all"]["accuracies"] != other["all"]["accuracies"]  # the labels did reach the score


def test_all_is_the_svm_protocol():
    train_x, train_y, test_x, test_y = noisy_features(1)
    settings = FewshotSettings(shots=("all",), c_grid=(1e-4, 1e-2, 1.0, 100.0), folds=4)
    row = probe(train_x, train_y, test_x, test_y, "abc", settings, seed=2, log=io.StringIO())["all"]
    svm = fit_and_score(train_x, train_y, test_x, test_y, SvmSettings(c_grid=(1e-4, 1e-2, 1.0, 100.0), folds=4), 2)
    assert row["mean"] == svm["accuracy"] and row["best_c"] == svm["best_c"] and row["c"] == [svm["best_c"]]
    assert row["cv_scores"] == svm["cv_scores"] and row["n_draws"] == 1 and row["std"] is None
    assert row["n_train"] == [36]


def test_shots_beyond_a_category_are_recorded_with_what_it_has():
    train_x, train_y, test_x, test_y = noisy_features()
    keep = np.r_[np.flatnonzero(train_y != 2), np.flatnonzero(train_y == 2)[:3]]  # class "c" keeps 3 objects
    settings = FewshotSettings(shots=(2, 5), draws=2)
    result = probe(train_x[keep], train_y[keep], test_x, test_y, ["a", "b", "c"], settings, 0, log=io.StringIO())
    assert result["2"]["short_categories"] == {} and result["2"]["n_train"] == [6, 6]
    assert result["5"]["short_categories"] == {"c": 3} and result["5"]["n_train"] == [13, 13]
    log = io.StringIO()
    probe(train_x[keep], train_y[keep], test_x, test_y, ["a", "b", "c"], settings, 0, log=log)
    assert "short of 5: {'c': 3}" in log.getvalue()  # and it is said in the job's log


def test_settings_reject_bad_shots_draws_and_c():
    for block, message in (({"shots": [0]}, "positive integer or 'all'"), ({"shots": ["most"]}, "'all'"),
                           ({"shots": [5, 5]}, "repeats"), ({"draws": 0}, "draws"), ({"c": 0}, "c must be positive"),
                           ({"kernel": "rbf"}, "unknown setting")):
        with pytest.raises(ValueError, match=message):
            FewshotSettings.of(block)
    assert FewshotSettings.of({"shots": [1, "all"]}).shots == (1, "all")


# --- records, the long table and the shaped table --------------------------------------------

def test_fewshot_metrics_name_their_shot_count():
    assert [fewshot_metric(k) for k in (1, 10, "all")] == ["overall_accuracy_1shot", "overall_accuracy_10shot",
                                                           "overall_accuracy_all"]
    assert [fewshot_shots(m) for m in ("overall_accuracy_5shot", "overall_accuracy_all", "overall_accuracy",
                                       "overall_accuracy_0shot")] == [5, "all", None, None]


def record(**changes) -> dict:
    base = make_record(protocol="fewshot", benchmark="modelnet40", backbone="dgcnn", variant=None, init="random",
                       seed=0, value=50.0, suite="demo", image_backbone=None, trainable_pretrain_params=None,
                       checkpoint=None, details={}, metric="overall_accuracy_5shot")
    return {**base, **changes}


def test_records_accept_fewshot_metrics_and_the_random_baseline_only_where_they_belong():
    assert validate_record(Path("f.json"), record())["metric"] == "overall_accuracy_5shot"
    with pytest.raises(ResultFileError, match="'overall_accuracy' is not a metric of protocol 'fewshot'"):
        validate_record(Path("f.json"), record(metric="overall_accuracy"))
    with pytest.raises(ResultFileError, match="'overall_accuracy_5shot' is not a metric of protocol 'svm'"):
        validate_record(Path("f.json"), record(protocol="svm"))
    with pytest.raises(ResultFileError, match="key 'metric'"):
        validate_record(Path("f.json"), record(metric="overall_accuracy_fewshot"))
    with pytest.raises(ResultFileError, match="'random' is the baseline"):
        validate_record(Path("f.json"), record(protocol="finetune", metric="overall_accuracy"))


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory) -> dict:
    """Three classes of 4 training / 2 test clouds (class "c": 2 training clouds), 32 points each."""
    root = tmp_path_factory.mktemp("fewshot_data") / "modelnet40_ply_hdf5_2048"
    rng = np.random.default_rng(0)
    for split, counts in (("train", (4, 4, 2)), ("test", (2, 2, 2))):
        labels = np.repeat(np.arange(3), counts)
        clouds = rng.normal(0, 1, (len(labels), 32, 6)).astype(np.float32)
        clouds[..., 1] *= 1 + 2 * labels[:, None]  # stretched along y by class
        write_modelnet40_h5(root, split, clouds, labels, ["a", "b", "c"])
    return {"format": "modelnet40_h5", "root": str(root), "normals": True}


def test_the_stage_writes_one_record_per_shot_count(tiny_dataset, tmp_path):
    settings = {"shots": [1, 3, "all"], "draws": 3, "n_points": 32, "c_grid": [0.1, 1.0], "folds": 2}
    out = tmp_path / "fewshot" / "seed4.json"
    records = run_fewshot("modelnet40", tiny_dataset, settings, out, "demo", 4,
                          random_spec={"backbone": "dgcnn", "options": TINY_DGCNN, "up_axis": "y"}, log=io.StringIO())
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(records))
    assert [r["metric"] for r in written] == ["overall_accuracy_1shot", "overall_accuracy_3shot",
                                              "overall_accuracy_all"]
    details = written[0]["details"]
    for r, label in zip(written, ("1", "3", "all"), strict=True):
        assert r["protocol"] == "fewshot" and r["init"] == "random" and r["variant"] is None and r["seed"] == 4
        assert r["value"] == details["shots"][label]["mean"]
    assert len(details["shots"]["3"]["accuracies"]) == 3 and details["shots"]["3"]["short_categories"] == {"c": 2}
    assert details["shots"]["all"]["std"] is None and details["shots"]["all"]["n_draws"] == 1
    assert details["precision"] == "fp32" and details["feature_dim"] == 32 and details["picat_only"]
    rows = load_results([out])
    assert len(rows) == 3 and set(rows["variant"]) == {""} and set(rows["protocol"]) == {"fewshot"}


def summary_of(values: dict[tuple[str, str, int], float]) -> pd.DataFrame:
    """A summarise() of few-shot records {(init/variant, metric, seed): value}."""
    rows = []
    for (source, metric, seed), value in values.items():
        pretrained = source != "random"
        rows.append(validate_record(Path(f"{source}_{metric}_{seed}.json"), make_record(
            protocol="fewshot", benchmark="scanobjectnn_obj_bg", backbone="dgcnn",
            variant=source if pretrained else None, init="pic@point" if pretrained else "random", seed=seed,
            value=value, suite="demo", image_backbone="toy/none" if pretrained else None,
            trainable_pretrain_params=7 if pretrained else None, checkpoint=None, details={}, metric=metric)))
    return summarise(pd.DataFrame(rows).astype({"trainable_pretrain_params": "Int64"}))


VALUES = {("full", "overall_accuracy_all", 0): 80.0, ("full", "overall_accuracy_all", 1): 84.0,
          ("full", "overall_accuracy_5shot", 0): 60.0, ("full", "overall_accuracy_5shot", 1): 70.0,
          ("random", "overall_accuracy_5shot", 0): 40.0, ("random", "overall_accuracy_5shot", 1): 44.0,
          ("random", "overall_accuracy_all", 0): 61.0, ("full", "overall_accuracy_1shot", 0): 33.0}


def test_long_rows_say_picat_only_one_row_per_shot_count():
    long = fewshot_long_rows(summary_of(VALUES))
    assert list(long.columns) == LONG_COLUMNS
    assert set(long["table"]) == {"fewshot"} and long["paper_value"].isna().all()
    assert long["source"].str.contains("picat only").all() and long["source"].str.contains("not in the paper").all()
    assert list(zip(long["init"], long["metric"], strict=True)) == [
        ("pic@point", "overall_accuracy_1shot"), ("pic@point", "overall_accuracy_5shot"),
        ("pic@point", "overall_accuracy_all"), ("random", "overall_accuracy_5shot"), ("random", "overall_accuracy_all")]
    five = long[(long["init"] == "pic@point") & (long["metric"] == "overall_accuracy_5shot")].iloc[0]
    assert five["value"] == 65.0 and five["std"] == pytest.approx(math.sqrt(50.0)) and five["n_runs"] == 2
    assert set(long[long["init"] == "random"]["image_weights"]) == {""}


def test_shaped_table_cells_are_mean_std_n_over_seeds_and_marked_picat_only(tmp_path):
    long = fewshot_long_rows(summary_of(VALUES))
    wide = fewshot_wide_table(long)
    assert list(wide.columns) == ["benchmark", "backbone", "variant", "init", "method", "1-shot", "5-shot", "all",
                                  "suite", "image_weights", "note"]
    full, random = wide.iloc[0], wide.iloc[1]
    # By hand: 5-shot (60, 70) -> 65.00 ± 7.07 (2); all (80, 84) -> 82.00 ± 2.83 (2); one seed: no std.
    assert (full["1-shot"], full["5-shot"], full["all"]) == ("33.00 (1)", "65.00 ± 7.07 (2)", "82.00 ± 2.83 (2)")
    assert (random["1-shot"], random["5-shot"], random["all"]) == ("", "42.00 ± 2.83 (2)", "61.00 (1)")
    assert full["method"] == "DGCNN+Pic@Point full (picat)" and random["method"] == "DGCNN random init (picat)"
    assert (wide["note"] == NOTE).all() and "not in the paper" in NOTE
    write_fewshot_table(long, tmp_path / "fewshot.csv")
    assert pd.read_csv(tmp_path / "fewshot.csv", keep_default_na=False)["5-shot"].tolist() == [
        "65.00 ± 7.07 (2)", "42.00 ± 2.83 (2)"]
    write_fewshot_table(long.iloc[0:0], tmp_path / "fewshot.csv")  # no few-shot results: no stale table
    assert not (tmp_path / "fewshot.csv").exists()


def test_the_long_table_carries_the_fewshot_rows_after_the_paper_tables(tmp_path):
    summary = summary_of(VALUES)
    write_summary_tables(summary, tmp_path / "tables.csv", tmp_path / "tables", extra_long=fewshot_long_rows(summary))
    long = pd.read_csv(tmp_path / "tables.csv")
    assert list(long["table"]) == ["fewshot"] * 5 and list(long.columns) == LONG_COLUMNS
    with pytest.raises(ValueError, match="extra long-table rows have columns"):
        write_summary_tables(summary, tmp_path / "t.csv", tmp_path / "tables",
                             extra_long=fewshot_long_rows(summary).drop(columns="source"))


# --- wiring ---------------------------------------------------------------------------------

def test_cli_passes_the_threads_and_precision_to_the_stage(monkeypatch):
    seen = {}
    monkeypatch.setattr("picat.stages.fewshot.run_fewshot", lambda *args, **kwargs: seen.update(kwargs))
    threads = torch.get_num_threads()
    try:
        args = build_parser().parse_args(["fewshot", "--benchmark", "modelnet40", "--dataset", "{}", "--settings", "{}",
                                          "--random", "{}", "--seed", "0", "--suite", "demo", "--out", "x.json",
                                          "--threads", "3", "--amp", "bf16"])
        args.run(args)
    finally:
        torch.set_num_threads(threads)
    assert seen["n_jobs"] == 3 and seen["amp"] == "bf16" and seen["random_spec"] == {}


def test_config_has_a_valid_fewshot_block_in_both_suites():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for suite in ("demo", "paper"):
        block = dict(config[suite]["downstream"]["fewshot"])
        assert block.pop("benchmarks") and FewshotSettings.of(block).shots == (1, 5, 10, "all")
    for key, value in (("shots", [1, "most"]), ("draws", 0), ("benchmarks", ["shapenetpart"])):
        broken = copy.deepcopy(config)
        broken["demo"]["downstream"]["fewshot"][key] = value
        with pytest.raises(ConfigError, match=f"demo.downstream.fewshot.{key}"):
            validate_config(broken)
