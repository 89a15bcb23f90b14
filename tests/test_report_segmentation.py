"""Collating segmentation results: list-form record files, per-metric summaries, Tables 4 and 5."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest

from picat.downstream.records import ResultFileError, make_record, make_records, write_record, write_records
from picat.report.paper_tables import LONG_COLUMNS, build_long_table, build_wide_tables, load_paper_tables, write_tables
from picat.report.results import load_results, summarise

IMAGE = "efficientnet_lite0/imagenet"
# Two seeds per init; the values are arbitrary but distinct so that means and stds can be checked.
PARTSEG_VALUES = {"pic@point": [{"instance_miou": 80.0, "class_miou": 70.0},
                                {"instance_miou": 82.0, "class_miou": 74.0}],
                  "scratch": [{"instance_miou": 78.0, "class_miou": 69.0},
                              {"instance_miou": 79.0, "class_miou": 69.0}]}
SEMSEG_VALUES = {"pic@point": [{"miou": 50.0, "macc": 60.0, "overall_accuracy": 80.0},
                               {"miou": 54.0, "macc": 62.0, "overall_accuracy": 82.0}],
                 "scratch": [{"miou": 45.0, "macc": 55.0, "overall_accuracy": 75.0},
                             {"miou": 47.0, "macc": 56.0, "overall_accuracy": 76.0}]}


def _run_keys(protocol: str, init: str, seed: int) -> dict:
    """The run keys of one synthetic segmentation run."""
    pretrained = init == "pic@point"
    return {"protocol": protocol, "benchmark": {"partseg": "shapenetpart", "semseg": "s3dis"}[protocol],
            "backbone": {"partseg": "dgcnn", "semseg": "pointnext"}[protocol],
            "variant": "full" if pretrained else None, "init": init, "seed": seed, "suite": "demo",
            "image_backbone": IMAGE if pretrained else None,
            "trainable_pretrain_params": 1_500_000 if pretrained else None,
            "checkpoint": "results/pretrain/full/seed0.pt" if pretrained else None, "details": {"epochs": 1}}


def _write_runs(folder: Path, protocol: str, values: dict[str, list[dict[str, float]]]) -> list[Path]:
    paths = []
    for init, per_seed in values.items():
        for seed, metrics in enumerate(per_seed):
            path = folder / protocol / f"{init.replace('@', '_')}_seed{seed}.json"
            write_records(make_records(metrics, **_run_keys(protocol, init, seed)), path)
            paths.append(path)
    return paths


@pytest.fixture
def seg_paths(tmp_path: Path) -> list[Path]:
    """Eight list-form files: partseg and semseg, both inits, two seeds each."""
    return _write_runs(tmp_path, "partseg", PARTSEG_VALUES) + _write_runs(tmp_path, "semseg", SEMSEG_VALUES)


def _classification_record(**overrides) -> dict:
    record = make_record(protocol="svm", benchmark="modelnet40", backbone="dgcnn", variant="full", init="pic@point",
                         seed=0, value=80.0, suite="demo", image_backbone=IMAGE, trainable_pretrain_params=1_500_000,
                         checkpoint="results/pretrain/full/seed0.pt", details={})
    record.update(overrides)
    return record


# --- record files ---------------------------------------------------------------------------

def test_list_file_loads_one_row_per_metric(seg_paths: list[Path], tmp_path: Path) -> None:
    single = tmp_path / "svm.json"
    write_record(_classification_record(), single)
    results = load_results([seg_paths[0], single])
    assert json.loads(seg_paths[0].read_text())[0]["details"] == {"epochs": 1}
    assert list(results["metric"]) == ["instance_miou", "class_miou", "overall_accuracy"]
    assert list(results["value"]) == [80.0, 70.0, 80.0]
    assert list(results["path"]) == [str(seg_paths[0])] * 2 + [str(single)]
    assert set(results["protocol"][:2]) == {"partseg"} and results["seed"][:2].tolist() == [0, 0]
    assert len(load_results(seg_paths)) == 4 * 2 + 4 * 3


def test_summaries_per_metric(seg_paths: list[Path]) -> None:
    summary = summarise(load_results(seg_paths)).set_index(["protocol", "init", "metric"])
    assert len(summary) == 2 * 2 + 2 * 3
    plus = summary.loc[("partseg", "pic@point", "instance_miou")]
    assert (plus["mean"], plus["n_runs"], plus["seeds"]) == (81.0, 2, "0 1")
    assert plus["std"] == pytest.approx(math.sqrt(2.0))  # deviations -1, +1 -> 2 / (2 - 1)
    cls = summary.loc[("partseg", "pic@point", "class_miou")]
    assert cls["mean"] == 72.0 and cls["std"] == pytest.approx(math.sqrt(8.0))
    scratch = summary.loc[("partseg", "scratch", "class_miou")]
    assert (scratch["mean"], scratch["std"], scratch["image_backbone"], scratch["variant"]) == (69.0, 0.0, "", "")
    assert summary.loc[("semseg", "scratch", "macc"), "mean"] == 55.5


def test_make_records_and_write_records_round_trip(tmp_path: Path) -> None:
    records = make_records({"miou": 50.0, "macc": 60.0}, **_run_keys("semseg", "scratch", 3))
    assert [(r["metric"], r["value"], r["seed"]) for r in records] == [("miou", 50.0, 3), ("macc", 60.0, 3)]
    path = tmp_path / "out" / "run.json"
    write_records(records, path)
    assert json.loads(path.read_text()) == records
    assert not list(path.parent.glob(".*tmp*"))
    with pytest.raises(ValueError, match="at least one metric"):
        make_records({}, **_run_keys("semseg", "scratch", 0))
    with pytest.raises(TypeError, match="list of records"):
        write_records(records[0], tmp_path / "object.json")  # type: ignore[arg-type]


# --- validation -----------------------------------------------------------------------------

def test_bad_metric_for_protocol_names_file_and_key(tmp_path: Path) -> None:
    svm = tmp_path / "svm_miou.json"
    svm.write_text(json.dumps(_classification_record(metric="miou")))
    with pytest.raises(ResultFileError,
                       match=r"svm_miou\.json: key 'metric': 'miou' is not a metric of protocol 'svm'"):
        load_results([svm])
    # In a list file the message names the record's index too.
    records = make_records({"instance_miou": 80.0, "miou": 50.0}, **_run_keys("partseg", "pic@point", 0))
    with pytest.raises(ResultFileError, match=r"part\.json: record \[1\]: key 'metric': 'miou' is not a metric of "
                                              r"protocol 'partseg'"):
        write_records(records, tmp_path / "part.json")
    assert not (tmp_path / "part.json").exists()
    wrong_benchmark = _classification_record(protocol="semseg", metric="miou")
    (tmp_path / "bench.json").write_text(json.dumps([wrong_benchmark]))
    with pytest.raises(ResultFileError, match=r"bench\.json: record \[0\]: key 'benchmark': 'modelnet40' is not a "
                                              r"benchmark of protocol 'semseg'"):
        load_results([tmp_path / "bench.json"])
    scratch_svm = _classification_record(variant=None, init="scratch")
    with pytest.raises(ResultFileError, match=r"key 'init': 'scratch' is the baseline"):
        write_record(scratch_svm, tmp_path / "scratch.json")


def test_list_file_must_be_one_run(tmp_path: Path) -> None:
    first, second = make_records({"miou": 50.0, "macc": 60.0}, **_run_keys("semseg", "scratch", 0))
    path = tmp_path / "run.json"
    path.write_text(json.dumps([first, {**second, "seed": 1}]))
    with pytest.raises(ResultFileError, match=r"run\.json: record \[1\]: key 'seed': 1 differs from record \[0\]'s 0"):
        load_results([path])
    path.write_text(json.dumps([first, {**second, "metric": "miou"}]))
    with pytest.raises(ResultFileError, match=r"record \[1\]: key 'metric': 'miou' repeats record \[0\]"):
        load_results([path])
    missing = dict(second)
    del missing["value"]
    path.write_text(json.dumps([first, missing]))
    with pytest.raises(ResultFileError, match=r"run\.json: record \[1\]: key 'value': missing"):
        load_results([path])
    path.write_text("[]")
    with pytest.raises(ResultFileError, match=r"run\.json: is an empty list"):
        load_results([path])
    path.write_text(json.dumps([first, "not a record"]))
    with pytest.raises(ResultFileError, match=r"record \[1\]: expected a JSON object, got str"):
        load_results([path])


# --- the paper's Tables 4 and 5 -------------------------------------------------------------

def _paper_values(paper: pd.DataFrame, table: str, method: str) -> dict[str, float]:
    rows = paper[(paper["table"] == table) & (paper["method"] == method)]
    return dict(zip(rows["metric"], rows["paper_value"], strict=True))


def test_paper_tables_4_and_5() -> None:
    paper = load_paper_tables()
    assert _paper_values(paper, "table4", "DGCNN+Pic@Point (ours)") == {"instance_miou": 85.8, "class_miou": 83.0}
    assert _paper_values(paper, "table4", "DGCNN (Wang et al. 2019)") == {"instance_miou": 85.2, "class_miou": 82.3}
    # "-" cells are absent rows.
    assert _paper_values(paper, "table4", "DGCNN+PointVST (Zhang and Hou 2023)") == {"instance_miou": 87.4}
    assert _paper_values(paper, "table5", "PointNeXt-S (reproduce)") == {"miou": 62.9, "macc": 69.5}
    assert _paper_values(paper, "table5", "PointNeXt-S+Pic@Point (ours)") == {"miou": 63.6, "macc": 71.1}
    assert _paper_values(paper, "table5", "PointNeXt-XL (Qian et al. 2022a)") == {"miou": 70.5}
    macc = paper[(paper["table"] == "table5") & (paper["init"] == "pic@point") & (paper["metric"] == "macc")]
    assert "1.6" in macc["source"].iloc[0] and "+0.6" in macc["source"].iloc[0]
    assert set(paper[paper["table"] == "table4"]["benchmark"]) == {"shapenetpart"}
    assert set(paper[paper["table"] == "table5"]["metric"]) == {"miou", "macc"}


def _long_row(long: pd.DataFrame, table: str, method: str, metric: str) -> pd.Series:
    rows = long[(long["table"] == table) & (long["method"] == method) & (long["metric"] == metric)]
    assert len(rows) == 1, rows
    return rows.iloc[0]


def test_long_table_segmentation(seg_paths: list[Path]) -> None:
    long = build_long_table(summarise(load_results(seg_paths)), load_paper_tables())
    assert list(long.columns) == LONG_COLUMNS and set(long["table"]) == {"table4", "table5"}
    plus = _long_row(long, "table4", "DGCNN+Pic@Point (picat)", "instance_miou")
    assert (plus["value"], plus["n_runs"], plus["paper_value"], plus["image_weights"]) == (81.0, 2, 85.8, IMAGE)
    # DGCNN's published result is the reference for DGCNN from scratch, replaced by picat's row.
    scratch = _long_row(long, "table4", "DGCNN scratch (picat)", "class_miou")
    assert (scratch["value"], scratch["paper_value"], scratch["image_weights"]) == (69.0, 82.3, "")
    published_dgcnn = long["method"].eq("DGCNN (Wang et al. 2019)")
    assert not (published_dgcnn & (long["table"] == "table4")).any()
    assert (published_dgcnn & (long["table"] == "table5")).sum() == 1  # Table 5 runs PointNeXt, not DGCNN
    assert "DGCNN (Wang et al. 2019)" in scratch["source"]
    assert _long_row(long, "table5", "PointNeXt-S scratch (picat)", "miou")["paper_value"] == 62.9
    assert _long_row(long, "table5", "PointNeXt-S+Pic@Point (picat)", "macc")["paper_value"] == 71.1
    # The published PointNeXt-S stays as a paper-only row; S3DIS overall accuracy is not in Table 5.
    assert _long_row(long, "table5", "PointNeXt-S (Qian et al. 2022a)", "miou")["paper_value"] == 63.4
    assert "overall_accuracy" not in set(long["metric"])
    assert len(long) == (21 - 4 + 4) + (15 - 4 + 4)


def test_wide_tables_4_and_5(seg_paths: list[Path]) -> None:
    wide = build_wide_tables(build_long_table(summarise(load_results(seg_paths)), load_paper_tables()))
    assert set(wide) == {"table4", "table5"}
    suffixes = ("", "_std", "_n", "_paper")
    table4 = wide["table4"]
    assert list(table4.columns) == ["method", *[f"{m}{s}" for m in ("ins. mIoU (%)", "cls. mIoU (%)")
                                                for s in suffixes], "suite", "image_weights"]
    assert len(table4) == 12  # the paper's 12 methods, Pic@Point and DGCNN replaced by picat's rows
    # Rows stand where the paper printed them: DGCNN scratch second, Pic@Point last.
    assert table4["method"].iloc[1] == "DGCNN scratch (picat)"
    assert table4["method"].iloc[-1] == "DGCNN+Pic@Point (picat)"
    table4 = table4.set_index("method")
    ours = table4.loc["DGCNN+Pic@Point (picat)"]
    assert (ours["ins. mIoU (%)"], ours["ins. mIoU (%)_std"], ours["ins. mIoU (%)_n"], ours["ins. mIoU (%)_paper"]) == \
        (81.0, 1.41, 2, 85.8)
    assert (ours["cls. mIoU (%)"], ours["cls. mIoU (%)_paper"], ours["suite"], ours["image_weights"]) == \
        (72.0, 83.0, "demo", IMAGE)
    assert table4.loc["DGCNN scratch (picat)", "cls. mIoU (%)_paper"] == 82.3
    crosspoint = table4.loc["DGCNN+CrossPoint (Afham et al. 2022)"]
    assert crosspoint["ins. mIoU (%)_paper"] == 85.5 and math.isnan(crosspoint["cls. mIoU (%)_paper"])
    assert math.isnan(crosspoint["ins. mIoU (%)"]) and pd.isna(crosspoint["ins. mIoU (%)_n"])

    table5 = wide["table5"]
    assert list(table5.columns) == ["method", *[f"{m}{s}" for m in ("mIoU (%)", "mAcc (%)") for s in suffixes],
                                    "suite", "image_weights"]
    assert len(table5) == 9
    table5 = table5.set_index("method")
    scratch = table5.loc["PointNeXt-S scratch (picat)"]
    assert (scratch["mIoU (%)"], scratch["mIoU (%)_paper"], scratch["mAcc (%)"], scratch["mAcc (%)_paper"]) == \
        (46.0, 62.9, 55.5, 69.5)
    assert (scratch["mAcc (%)_n"], scratch["image_weights"]) == (2, "")
    plus = table5.loc["PointNeXt-S+Pic@Point (picat)"]
    assert (plus["mIoU (%)"], plus["mIoU (%)_std"], plus["mAcc (%)_paper"]) == (52.0, 2.83, 71.1)


def test_write_tables_with_classification_and_segmentation(seg_paths: list[Path], tmp_path: Path) -> None:
    svm = tmp_path / "svm.json"
    write_record(_classification_record(value=81.5), svm)
    out_dir = tmp_path / "tables"
    out_dir.mkdir()
    (out_dir / "table2.csv").write_text("stale\n")
    write_tables([*seg_paths, svm], tmp_path / "tables.csv", out_dir)
    assert sorted(path.name for path in out_dir.iterdir()) == ["table1.csv", "table3.csv", "table4.csv", "table5.csv"]
    table1 = pd.read_csv(out_dir / "table1.csv").set_index("method")
    assert table1.loc["DGCNN+Pic@Point (picat)", "modelnet40"] == 81.5
    assert table1.loc["DGCNN+Pic@Point (picat)", "modelnet40_paper"] == 92.5
    table4 = pd.read_csv(out_dir / "table4.csv").set_index("method")
    assert table4.loc["DGCNN+Pic@Point (picat)", "ins. mIoU (%)_paper"] == 85.8
    # Without segmentation results the stale Tables 4 and 5 are removed.
    write_tables([svm], tmp_path / "tables.csv", out_dir)
    assert sorted(path.name for path in out_dir.iterdir()) == ["table1.csv", "table3.csv"]
    assert not list(tmp_path.glob(".*tmp*")) and not list(out_dir.glob(".*tmp*"))
