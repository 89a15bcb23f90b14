"""Collating downstream results: the paper's numbers, seed summaries, the tables and Figure 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from picat.downstream.records import ResultFileError
from picat.report.figure2 import plot_figure2
from picat.report.paper_tables import (
    LONG_COLUMNS,
    build_long_table,
    build_wide_tables,
    is_paper_own_row,
    load_paper_tables,
    write_tables,
)
from picat.report.results import load_results, summarise

IMAGE = "efficientnet_lite0/imagenet"


def _record(**overrides) -> dict:
    record = {"protocol": "svm", "benchmark": "modelnet40", "backbone": "dgcnn", "variant": "full",
              "init": "pic@point", "seed": 0, "metric": "overall_accuracy", "value": 80.0, "suite": "demo",
              "image_backbone": IMAGE, "trainable_pretrain_params": 1_500_000,
              "checkpoint": "results/pretrain/full/seed0.pt", "details": {}}
    record.update(overrides)
    return record


class Results:
    """Writes result files into a folder and remembers their paths."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.paths = folder, []

    def add(self, name: str, **overrides) -> Path:
        path = self.folder / f"{name}.json"
        path.write_text(json.dumps(_record(**overrides)))
        self.paths.append(path)
        return path


@pytest.fixture
def results(tmp_path: Path) -> Results:
    return Results(tmp_path)


@pytest.fixture
def svm_results(results: Results) -> Results:
    """Table 1/3 runs: full over three seeds, one no_local, one random-init, one ScanObjectNN."""
    for seed, value in enumerate([80.0, 81.0, 83.0]):
        results.add(f"full_{seed}", seed=seed, value=value)
    results.add("no_local", variant="no_local", value=70.0)
    results.add("random", variant=None, init="random", image_backbone=None, trainable_pretrain_params=None,
                checkpoint=None, value=50.0)
    results.add("bg", benchmark="scanobjectnn_obj_bg", value=60.0)
    return results


def _paper_cell(paper: pd.DataFrame, table: str, benchmark: str, method_start: str) -> pd.Series:
    rows = paper[(paper["table"] == table) & (paper["benchmark"] == benchmark)
                 & paper["method"].str.startswith(method_start)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


# --- the paper's numbers -------------------------------------------------------------------

def test_paper_tables_known_cells() -> None:
    paper = load_paper_tables()
    assert _paper_cell(paper, "table1", "modelnet40", "DGCNN+CrossPoint")["paper_value"] == 91.2
    assert _paper_cell(paper, "table1", "scanobjectnn_obj_bg", "DGCNN+Pic@Point (ours)")["paper_value"] == 85.7
    plus = _paper_cell(paper, "table2", "scanobjectnn_pb_t50_rs", "PointNeXt-S+Pic@Point")
    assert (plus["paper_value"], plus["params_m"], plus["backbone"], plus["variant"], plus["init"]) == \
        (88.1, 1.4, "pointnext", "full", "pic@point")
    reproduce = _paper_cell(paper, "table2", "scanobjectnn_obj_bg", "PointNeXt-S (reproduce)")
    assert (reproduce["paper_value"], reproduce["init"], reproduce["variant"]) == (91.2, "scratch", "")
    ablation = paper[paper["table"] == "table3"].set_index("variant")["paper_value"]
    assert ablation.to_dict() == {"no_local": 92.3, "no_global": 92.3, "no_pose": 91.8, "normals": 92.8,
                                  "full": 92.5}
    assert math.isnan(_paper_cell(paper, "table1", "modelnet40", "DGCNN+CrossPoint")["params_m"])


def test_paper_tables_row_counts_and_keys() -> None:
    paper = load_paper_tables()
    # Table 1: 12 methods x 2 benchmarks minus 5 "-" cells; Table 2: 19 methods x 3 minus 12 "-";
    # Table 4: 12 methods x 2 metrics minus 3 "-"; Table 5: 9 methods x 2 metrics minus 3 "-".
    assert paper.groupby("table").size().to_dict() == {"table1": 19, "table2": 45, "table3": 5, "table4": 21,
                                                       "table5": 15}
    assert not paper.duplicated(["table", "benchmark", "method", "metric"]).any()
    classification = paper[paper["table"].isin(["table1", "table2", "table3"])]
    assert set(classification["metric"]) == {"overall_accuracy"}
    assert classification["paper_value"].between(50, 100).all()
    assert paper["paper_value"].between(40, 100).all()  # Table 5's PointNet mIoU is 41.1
    assert set(paper[paper["table"] == "table1"]["benchmark"]) == {"modelnet40", "scanobjectnn_obj_bg"}
    # Every Table 2 row states its parameters; no other table does.
    assert paper[paper["table"] == "table2"]["params_m"].notna().all()
    assert paper[paper["table"] != "table2"]["params_m"].isna().all()
    # The rows picat reproduces are unique on the match key.
    own = paper[paper["method"].map(is_paper_own_row)]
    assert not own.duplicated(["table", "benchmark", "backbone", "variant", "init", "metric"]).any()
    # Tables 1-3 as before; Table 4: Pic@Point x 2 metrics; Table 5: (reproduce) and Pic@Point x 2.
    assert own.groupby("table").size().to_dict() == {"table1": 3, "table2": 6, "table3": 5, "table4": 2,
                                                     "table5": 4}


# --- results and summaries ----------------------------------------------------------------

def test_summarise_mean_std_n(svm_results: Results) -> None:
    summary = summarise(load_results(svm_results.paths))
    full = summary[(summary["benchmark"] == "modelnet40") & (summary["variant"] == "full")].iloc[0]
    assert full["mean"] == pytest.approx(81.333333, abs=1e-5)
    # Sample std by hand: deviations -4/3, -1/3, 5/3 -> sum of squares 42/9, / (3 - 1) -> sqrt(7/3).
    assert full["std"] == pytest.approx(math.sqrt(7 / 3))
    assert (full["n_runs"], full["seeds"], full["suite"], full["image_backbone"]) == (3, "0 1 2", "demo", IMAGE)
    assert full["trainable_pretrain_params"] == 1_500_000
    single = summary[summary["variant"] == "no_local"].iloc[0]
    assert single["n_runs"] == 1 and math.isnan(single["std"])
    assert len(summary) == 4


def test_summarise_rejects_mismatched_suite(results: Results) -> None:
    results.add("a", seed=0)
    results.add("b", seed=1, suite="paper")
    with pytest.raises(ValueError, match="'suite'"):
        summarise(load_results(results.paths))


def test_summarise_rejects_mismatched_image_backbone_and_repeated_seed(results: Results) -> None:
    results.add("a", seed=0)
    results.add("b", seed=1, image_backbone="resnet18/imagenet")
    with pytest.raises(ValueError, match="'image_backbone'"):
        summarise(load_results(results.paths))
    results.paths.pop()
    results.add("c", seed=0)
    with pytest.raises(ValueError, match="repeat seed"):
        summarise(load_results(results.paths))


def test_load_results_names_file_and_key(tmp_path: Path) -> None:
    missing = _record()
    del missing["value"]
    (tmp_path / "missing.json").write_text(json.dumps(missing))
    with pytest.raises(ResultFileError, match=r"missing\.json: key 'value': missing"):
        load_results([tmp_path / "missing.json"])
    (tmp_path / "bad.json").write_text(json.dumps(_record(benchmark="modelnet10")))
    with pytest.raises(ResultFileError, match=r"bad\.json: key 'benchmark': 'modelnet10'"):
        load_results([tmp_path / "bad.json"])
    (tmp_path / "variant.json").write_text(json.dumps(_record(init="random")))
    with pytest.raises(ResultFileError, match=r"variant\.json: key 'variant'"):
        load_results([tmp_path / "variant.json"])
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ResultFileError, match=r"broken\.json: is not valid JSON"):
        load_results([tmp_path / "broken.json"])


# --- the long table ------------------------------------------------------------------------

def _long(paths: list[Path]) -> pd.DataFrame:
    return build_long_table(summarise(load_results(paths)), load_paper_tables())


def _row(long: pd.DataFrame, table: str, benchmark: str, method: str) -> pd.Series:
    rows = long[(long["table"] == table) & (long["benchmark"] == benchmark) & (long["method"] == method)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_long_table_measured_and_paper_rows(svm_results: Results) -> None:
    long = _long(svm_results.paths)
    assert list(long.columns) == LONG_COLUMNS
    full = _row(long, "table1", "modelnet40", "DGCNN+Pic@Point (picat)")
    assert (full["paper_value"], full["n_runs"], full["suite"], full["image_weights"]) == (92.5, 3, "demo", IMAGE)
    assert full["value"] == pytest.approx(244 / 3)
    assert _row(long, "table1", "scanobjectnn_obj_bg", "DGCNN+Pic@Point (picat)")["paper_value"] == 85.7
    # DGCNN full is in Table 1 and in the ablation table.
    ablation_full = _row(long, "table3", "modelnet40", "Pic@Point full (picat)")
    assert ablation_full["value"] == full["value"] and ablation_full["paper_value"] == 92.5
    assert _row(long, "table3", "modelnet40", "Pic@Point no_local (picat)")["paper_value"] == 92.3
    random = _row(long, "table1", "modelnet40", "DGCNN random init (picat)")
    assert math.isnan(random["paper_value"]) and random["value"] == 50.0 and random["image_weights"] == ""
    crosspoint = _row(long, "table1", "modelnet40", "DGCNN+CrossPoint (Afham et al. 2022)")
    assert math.isnan(crosspoint["value"]) and pd.isna(crosspoint["n_runs"]) and crosspoint["suite"] == ""
    assert crosspoint["paper_value"] == 91.2
    # A reproduced paper row is not repeated; an unreproduced one (w/ normals) stays.
    assert not long["method"].eq("DGCNN+Pic@Point (ours)").any()
    assert long["method"].eq("DGCNN+Pic@Point (ours, w/ normals)").any()
    # No fine-tuning results: Table 2 is absent, not a block of empty rows.
    assert set(long["table"]) == {"table1", "table3"}
    assert not long.duplicated(["table", "benchmark", "method", "backbone", "init", "metric"]).any()


def test_long_table_finetune_only(results: Results) -> None:
    for seed, value in enumerate([90.0, 92.0]):
        results.add(f"plus_{seed}", protocol="finetune", benchmark="scanobjectnn_pb_t50_rs", backbone="pointnext",
                    seed=seed, value=value)
    results.add("scratch", protocol="finetune", benchmark="scanobjectnn_pb_t50_rs", backbone="pointnext",
                variant=None, init="scratch", image_backbone=None, value=85.0)
    long = _long(results.paths)
    assert set(long["table"]) == {"table2"}
    plus = _row(long, "table2", "scanobjectnn_pb_t50_rs", "PointNeXt-S+Pic@Point (picat)")
    assert (plus["value"], plus["paper_value"], plus["params_m"]) == (91.0, 88.1, 1.4)
    # The scratch run reproduces the authors' "PointNeXt-S (reproduce)" row, not Qian et al.'s.
    scratch = _row(long, "table2", "scanobjectnn_pb_t50_rs", "PointNeXt-S scratch (picat)")
    assert scratch["paper_value"] == 87.2 and scratch["image_weights"] == ""
    assert _row(long, "table2", "scanobjectnn_pb_t50_rs", "PointNeXt-S (Qian et al. 2022a)")["paper_value"] == 87.7


def test_long_table_rejects_mixed_suites(results: Results) -> None:
    results.add("demo")
    results.add("paper", benchmark="scanobjectnn_obj_bg", suite="paper")
    with pytest.raises(ValueError, match="several suites"):
        _long(results.paths)


# --- wide tables and files -----------------------------------------------------------------

def test_wide_tables(svm_results: Results) -> None:
    wide = build_wide_tables(_long(svm_results.paths))
    assert set(wide) == {"table1", "table3"}
    table1 = wide["table1"].set_index("method")
    benches = ["modelnet40", "scanobjectnn_obj_bg"]
    assert list(wide["table1"].columns) == ["method",
                                            *[f"{b}{s}" for b in benches for s in ("", "_std", "_n", "_paper")],
                                            "suite", "image_weights"]
    assert len(table1) == 13  # 12 paper methods, "(ours)" replaced by picat's row, + random init
    ours = table1.loc["DGCNN+Pic@Point (picat)"]
    assert (ours["modelnet40"], ours["modelnet40_std"], ours["modelnet40_n"]) == (81.33, 1.53, 3)
    assert (ours["scanobjectnn_obj_bg"], ours["scanobjectnn_obj_bg_paper"], ours["suite"]) == (60.0, 85.7, "demo")
    assert table1.loc["DGCNN+PointVST (Zhang and Hou 2023)", "modelnet40_paper"] == 92.1
    assert math.isnan(table1.loc["DGCNN+PointVST (Zhang and Hou 2023)", "scanobjectnn_obj_bg_paper"])

    table3 = wide["table3"].set_index("method")
    assert list(wide["table3"].columns) == ["method", "variant", "L_lcl", "L_glb", "pose", "normals", "OA", "OA_std",
                                            "OA_n", "OA_paper", "suite", "image_weights"]
    assert len(table3) == 6  # five paper variants + random init
    no_local = table3.loc["Pic@Point no_local (picat)"]
    assert (no_local["L_lcl"], no_local["L_glb"], no_local["normals"], no_local["OA"], no_local["OA_paper"]) == \
        ("×", "✓", "×", 70.0, 92.3)
    assert table3.loc["Pic@Point w/o pose conditioning", "pose"] == "×"


def test_write_tables(svm_results: Results, tmp_path: Path) -> None:
    out_dir = tmp_path / "tables"
    out_dir.mkdir()
    (out_dir / "table2.csv").write_text("stale\n")
    write_tables(svm_results.paths, tmp_path / "tables.csv", out_dir)
    assert sorted(path.name for path in out_dir.iterdir()) == ["table1.csv", "table3.csv"]
    long = pd.read_csv(tmp_path / "tables.csv")
    assert list(long.columns) == LONG_COLUMNS
    # Full precision in the long CSV, rounding only in the wide ones.
    assert long[long["method"] == "DGCNN+Pic@Point (picat)"]["value"].iloc[0] == pytest.approx(244 / 3, abs=1e-9)
    table1 = pd.read_csv(out_dir / "table1.csv")
    assert table1.loc[table1["method"] == "DGCNN+Pic@Point (picat)", "modelnet40"].iloc[0] == 81.33
    assert not list(tmp_path.glob(".*tmp*")) and not list(out_dir.glob(".*tmp*"))


# --- Figure 2 ------------------------------------------------------------------------------

def test_figure2_writes_png(svm_results: Results, tmp_path: Path) -> None:
    out = tmp_path / "figure2.png"
    plot_figure2(summarise(load_results(svm_results.paths)), out, paper_config_params=2_000_000)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    plot_figure2(summarise(load_results(svm_results.paths)), out, paper_config_params=None)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*tmp*"))


def test_figure2_needs_modelnet40_svm(results: Results, tmp_path: Path) -> None:
    results.add("bg", benchmark="scanobjectnn_obj_bg")
    results.add("random", variant=None, init="random", image_backbone=None, trainable_pretrain_params=None)
    out = tmp_path / "figure2.png"
    with pytest.raises(ValueError, match="no ModelNet40 linear-SVM result"):
        plot_figure2(summarise(load_results(results.paths)), out, paper_config_params=None)
    assert not out.exists()
