"""The real workflow, end to end, in a temporary directory: demo meshes -> BlenderProc
renders -> HDF5 shards, then incremental reruns read from Snakemake's dry-run plan."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import yaml

from picat.geometry import dilate_masks
from picat.shards import validate_shard

REPO = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.workflow


TINY_DEMO = Path(__file__).with_name("workflow_tiny_demo.yaml")


def tiny_config(render_env: Path) -> dict:
    """config.yaml with its demo block replaced by the tiny one in ``workflow_tiny_demo.yaml``."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["render_env"] = str(render_env)
    config["demo"] = yaml.safe_load(TINY_DEMO.read_text())["demo"]
    return config


def snakemake(workdir: Path, *args: str, config: str = "config.yaml") -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(workdir / config), "--cores", "2", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=1200)


def job_counts(output: str) -> dict[str, int]:
    """The "Job stats" table of a Snakemake run or dry run, by rule (empty when there is none)."""
    counts: dict[str, int] = {}
    table = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal", output, re.S)
    for line in (table.group(1).splitlines() if table else []):
        name, count = line.split()
        counts[name] = int(count)
    return counts


def plan(workdir: Path, *args: str, config: str = "config.yaml") -> tuple[dict[str, int], set[str]]:
    """A dry run's jobs by rule and the output files of its jobs."""
    result = snakemake(workdir, "-n", *args, config=config)
    assert result.returncode == 0, result.stdout + result.stderr
    outputs = {path for line in re.findall(r"^\s+output: (.*)$", result.stdout, re.M) for path in line.split(", ")}
    return job_counts(result.stdout), outputs


def planned_jobs(workdir: Path, *args: str, config: str = "config.yaml") -> dict[str, int]:
    """Jobs a dry run would run, by rule (empty when nothing is to be done)."""
    return plan(workdir, *args, config=config)[0]


TARGETS = ("shards", "pretrain", "results/tables.csv")


@pytest.fixture(scope="module")
def workflow_run(render_env, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("workflow")
    (workdir / "config.yaml").write_text(yaml.safe_dump(tiny_config(render_env)))
    result = snakemake(workdir, *TARGETS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return workdir


def test_demo_shards_are_valid_and_consistent_with_their_renders(workflow_run):
    shards = sorted((workflow_run / "results/shards/demo").glob("shard_*.h5"))
    assert [s.name for s in shards] == ["shard_00000.h5", "shard_00001.h5"]
    total = 0
    for shard in shards:
        summary = validate_shard(shard, check_projection=4)
        total += summary["objects"]
        assert summary["skipped"] == []
        assert summary["image_size"] == [224, 224] and summary["points_per_object"] == 256
        # Every object, every view: >= 95% of its sampled points fall on its rendered pixels.
        assert min(summary["min_fraction_on_mask"].values()) >= 0.95, summary["min_fraction_on_mask"]
        with h5py.File(shard) as f:
            background = 1 - f["masks"][()].mean()
            assert background > 0.3  # the mask is a silhouette, not the whole image
            images, masks = f["images"][()], f["masks"][()]
            # White background away from the anti-aliased outline (sub-pixel-thin parts are
            # never in the alpha > 0.5 mask, hence the few grey pixels); a shaded object.
            assert (images[~dilate_masks(masks, 1)].min(axis=-1) < 250).mean() < 1e-4
            assert images[masks].mean() < 240
    assert total == 6


def test_pretraining_job_gives_a_loadable_backbone(workflow_run):
    import torch

    import picat

    run = workflow_run / "results/pretrain/demo/dgcnn/full/seed0"
    backbone = picat.load_backbone(run / "checkpoint.pt")
    metadata = backbone.picat_metadata
    assert metadata["suite"] == "demo" and len(metadata["history"]) == 2
    assert (metadata["image_backbone"]["name"] == "efficientnet_lite0"
            and metadata["image_backbone"]["weights"] == "imagenet")
    with torch.no_grad():
        assert backbone(torch.randn(2, 128, 3)).shape == (2, 64)
    from picat.training_log import read_log

    assert sorted({row["epoch"] for row in read_log(run / "log.csv")}) == [1, 2]  # picat.training_log's long format


def test_tables_collate_every_downstream_run(workflow_run):
    import pandas as pd

    long = pd.read_csv(workflow_run / "results/tables.csv")
    measured = long[long["n_runs"].notna()]
    assert (set(measured["table"]) == {"table1", "table2", "table3", "table4", "table5", "correspondence", "fewshot"}
            and set(measured["suite"]) == {"demo"})
    pretrained = measured[measured["init"] == "pic@point"]
    assert set(pretrained["image_weights"]) == {"efficientnet_lite0/imagenet"}
    assert set(measured[measured["init"] != "pic@point"]["image_weights"].fillna("")) == {""}
    # Table 1's Pic@Point DGCNN row carries the paper's figure beside the measured one.
    row = measured[(measured["table"] == "table1") & (measured["benchmark"] == "modelnet40")
                   & (measured["init"] == "pic@point")]
    assert row["paper_value"].tolist() == [92.5] and 0 <= row["value"].iloc[0] <= 100
    assert (long["n_runs"].isna() & long["paper_value"].notna()).any()  # the paper's other methods
    assert sorted(p.name for p in (workflow_run / "results/tables").glob("*.csv")) == [
        "correspondence.csv", "fewshot.csv", "figure4.csv", *[f"table{i}.csv" for i in range(1, 6)]]
    assert (workflow_run / "results/figures/figure2.png").read_bytes()[:4] == b"\x89PNG"


def test_segmentation_tables_and_figure4(workflow_run):
    import pandas as pd

    table4 = pd.read_csv(workflow_run / "results/tables/table4.csv")
    table5 = pd.read_csv(workflow_run / "results/tables/table5.csv")
    figure4 = pd.read_csv(workflow_run / "results/tables/figure4.csv")
    for table, metric in ((table4, "ins. mIoU (%)"), (table5, "mIoU (%)")):
        measured = table[table["suite"].notna()]
        assert len(measured) == 2 and measured[metric].between(0, 100).all()
        assert (measured[f"{metric}_n"] == 1).all()
    # Both segmentation protocols scored every test point / shape of the stand-ins.
    record = json.loads(next((workflow_run / "results/downstream/demo/semseg").rglob("seed0.json")).read_text())
    assert [r["metric"] for r in record] == ["miou", "macc", "overall_accuracy"]
    assert record[0]["details"]["test"]["n_rooms"] == 1
    for backbone in ("dgcnn", "pointnext"):
        png = workflow_run / f"results/figures/figure4_{backbone}.png"
        assert png.stat().st_size > 10_000
        summary = json.loads((workflow_run / f"results/figures/figure4_{backbone}.json").read_text())
        ranks = [e["rank"] for obj in summary["objects"] for e in obj["exemplars"]]
        assert len(ranks) == 4 and all(1 <= r <= 49 for r in ranks)
        # The tables rule collates the summary's ranks into figure4.csv.
        row = figure4[figure4["backbone"] == backbone]
        assert row["exemplar_mean_rank"].tolist() == [summary["mean_rank"]] and row["suite"].tolist() == ["demo"]
        # Drawn from the held-out objects, and quoting the correspondence metric of its checkpoint.
        assert all("_heldout_" in obj["object_id"] for obj in summary["objects"])
        result = json.loads((workflow_run / f"results/correspondence/demo/{backbone}_full/seed0.json").read_text())
        assert result["n_objects"] == 2 and result["n_views"] == 20 and result["n_centres"] > 0
        assert row["model_view_top1"].tolist() == [result["metrics"]["model"]["view_top1"]]
    correspondence = pd.read_csv(workflow_run / "results/tables/correspondence.csv")
    assert set(correspondence["backbone"]) == {"dgcnn", "pointnext"} and (correspondence["n_seeds"] == 1).all()


def test_fewshot_table_holds_every_backbone_pretrained_and_at_random_init(workflow_run):
    import pandas as pd

    table = pd.read_csv(workflow_run / "results/tables/fewshot.csv", keep_default_na=False)
    # The tiny suite pre-trains dgcnn and pointnext (full, seed 0); each also at random init.
    assert sorted(zip(table["backbone"], table["variant"], table["init"], strict=True)) == [
        ("dgcnn", "", "random"), ("dgcnn", "full", "pic@point"), ("pointnext", "", "random"),
        ("pointnext", "full", "pic@point")]
    assert set(table["benchmark"]) == {"modelnet40"} and (table["note"].str.contains("not in the paper")).all()
    for column in ("1-shot", "5-shot", "all"):
        assert table[column].str.fullmatch(r"\d+\.\d\d \(1\)").all(), table[column]  # one seed: no std
    long = pd.read_csv(workflow_run / "results/tables.csv")
    rows = long[long["table"] == "fewshot"]
    assert len(rows) == 12 and rows["source"].str.contains("not in the paper").all()
    assert set(rows["metric"]) == {"overall_accuracy_1shot", "overall_accuracy_5shot", "overall_accuracy_all"}
    # The stand-ins have 2 training objects per category: 5 shots take both, and the record says so.
    record = json.loads((workflow_run / "results/downstream/demo/fewshot/modelnet40/dgcnn_random/seed0.json")
                        .read_text())
    five = record[0]["details"]["shots"]["5"]
    assert set(five["short_categories"].values()) == {2} and five["n_draws"] == 2
    assert five["n_train"] == [2 * len(five["short_categories"])] * 2


def test_complete_run_plans_nothing(workflow_run):
    assert planned_jobs(workflow_run, *TARGETS) == {}


def test_changing_svm_settings_replans_only_svms_and_collation(workflow_run):
    config = yaml.safe_load((workflow_run / "config.yaml").read_text())
    config["demo"]["downstream"]["svm"]["c_grid"] = [0.5, 5.0]
    (workflow_run / "config-svm.yaml").write_text(yaml.safe_dump(config))
    jobs = planned_jobs(workflow_run, *TARGETS, config="config-svm.yaml")
    # How the SVM fits is not how the features are extracted: no features job reruns.
    assert jobs == {"svm_pretrained": 2, "svm_random": 2, "tables": 1} and "features" not in jobs


def test_changing_the_shared_n_points_reextracts_the_features_and_refits_both_protocols(workflow_run):
    config = yaml.safe_load((workflow_run / "config.yaml").read_text())
    for protocol in ("svm", "fewshot"):  # picat.config refuses the two blocks disagreeing
        config["demo"]["downstream"][protocol]["n_points"] = 64
    (workflow_run / "config-n_points.yaml").write_text(yaml.safe_dump(config))
    jobs, outputs = plan(workflow_run, *TARGETS, config="config-n_points.yaml")
    # One extraction per (benchmark, backbone, source, seed) that either protocol reads: dgcnn full and
    # random on both svm benchmarks, pointnext full and random on the fewshot benchmark.
    assert jobs == {"features": 6, "svm_pretrained": 2, "svm_random": 2, "fewshot": 4, "tables": 1}
    assert {path for path in outputs if "/frozen_features/" in path} == {
        f"results/frozen_features/demo/{benchmark}/{backbone}_{source}/seed0.npz"
        for benchmark, backbone in (("modelnet40", "dgcnn"), ("scanobjectnn_obj_bg", "dgcnn"),
                                    ("modelnet40", "pointnext"))
        for source in ("full", "random")}


def changed_config(workdir: Path, section: str, **values) -> str:
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["demo"][section].update(values)
    name = f"config-{section}.yaml"
    (workdir / name).write_text(yaml.safe_dump(config))
    return name


def test_changing_sampling_replans_packing_only(workflow_run):
    jobs = planned_jobs(workflow_run, "shards", config=changed_config(workflow_run, "sampling", n_points=128))
    assert "render" not in jobs and "corpus" not in jobs and "heldout_corpus" not in jobs
    assert jobs.get("pack") == 3  # two training shards and the held-out one


def test_changing_a_pretraining_setting_replans_pretraining_only(workflow_run):
    jobs = planned_jobs(workflow_run, "pretrain", config=changed_config(workflow_run, "pretrain", temperature=0.2))
    assert jobs == {"pretrain_run": 2, "pretrain": 1}


def test_changing_dgcnn_options_leaves_pointnext_runs_alone(workflow_run):
    config = changed_config(workflow_run, "pretrain", dgcnn={"k": 5, "emb_dims": 32, "local_centres": 16})
    assert planned_jobs(workflow_run, "pretrain", config=config) == {"pretrain_run": 1, "pretrain": 1}


# Everything downstream of the shards of the tiny config: each shard's cache, both pre-training
# runs, the downstream runs that start from a checkpoint (never the scratch or random-init
# ones, nor the stand-in datasets), Figure 4 (it reads the shards), the tables, and the
# `shards`/`pretrain` target rules.
AFTER_SHARDS = {"encode": 3, "shard_index": 1, "shards": 1, "pretrain_run": 2, "pretrain": 1, "features": 3,
                "svm_pretrained": 2, "fewshot": 2, "finetune": 1, "partseg": 1, "semseg": 1, "correspondence": 2,
                "figure4": 2, "tables": 1}


def from_scratch_or_random(outputs: set[str]) -> set[str]:
    return {path for path in outputs if "_scratch/" in path or "_random/" in path}


def test_changing_the_render_engine_replans_renders_and_everything_after(workflow_run):
    jobs, outputs = plan(workflow_run, *TARGETS, config=changed_config(workflow_run, "render", engine="cycles"))
    # Neither the corpus, the render environment nor the stand-in benchmarks; everything after the renders.
    assert jobs == {"render": 3, "pack": 3, **AFTER_SHARDS}
    assert not from_scratch_or_random(outputs)


def test_changing_the_correspondence_batch_replans_the_metric_figure4_and_tables(workflow_run):
    jobs = planned_jobs(workflow_run, *TARGETS, config=changed_config(workflow_run, "correspondence", batch_size=2))
    assert jobs == {"correspondence": 2, "figure4": 2, "tables": 1}


def test_changing_a_fewshot_setting_replans_only_its_runs_and_the_tables(workflow_run):
    config = yaml.safe_load((workflow_run / "config.yaml").read_text())
    config["demo"]["downstream"]["fewshot"]["draws"] = 3
    (workflow_run / "config-fewshot.yaml").write_text(yaml.safe_dump(config))
    assert planned_jobs(workflow_run, *TARGETS, config="config-fewshot.yaml") == {"fewshot": 4, "tables": 1}


def test_changing_a_segmentation_setting_replans_only_its_runs_and_the_tables(workflow_run):
    config = yaml.safe_load((workflow_run / "config.yaml").read_text())
    config["demo"]["downstream"]["partseg"]["epochs"] = 2
    (workflow_run / "config-partseg.yaml").write_text(yaml.safe_dump(config))
    jobs, outputs = plan(workflow_run, *TARGETS, config="config-partseg.yaml")
    assert jobs == {"partseg": 2, "tables": 1}
    assert {path for path in outputs if "/partseg/" in path} == {
        f"results/downstream/demo/partseg/shapenetpart/dgcnn_{source}/seed0.json" for source in ("scratch", "full")}


def embedded_files(report: Path) -> dict[str, bytes]:
    """The files a self-contained Snakemake HTML report embeds (data URIs), by file name."""
    found = re.findall(r"data:[\w/.+-]+;charset=utf8;filename=([^;]+);base64,([A-Za-z0-9+/=]+)", report.read_text())
    return {name: base64.b64decode(data) for name, data in found}


def test_report_holds_the_tables_and_the_figures(workflow_run, tmp_path):
    report = tmp_path / "report.html"
    result = snakemake(workflow_run, "--report", str(report), *TARGETS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    embedded = embedded_files(report)
    expected = {"tables.csv": "results/tables.csv", "figure2.png": "results/figures/figure2.png"}
    expected.update({f"table{i}.csv": f"results/tables/table{i}.csv" for i in range(1, 6)})
    expected["figure4.csv"] = "results/tables/figure4.csv"  # Figure 4's exemplar ranks
    expected["correspondence.csv"] = "results/tables/correspondence.csv"  # picat-only correspondence metric
    expected["fewshot.csv"] = "results/tables/fewshot.csv"  # picat-only few-shot probe
    expected.update({f"figure4_{b}.png": f"results/figures/figure4_{b}.png" for b in ("dgcnn", "pointnext")})
    # Every table and figure, and no other result file (the report's own logo aside).
    assert {name for name in embedded if name.endswith((".csv", ".png", ".json"))} == set(expected)
    for name, path in expected.items():
        assert embedded[name] == (workflow_run / path).read_bytes(), name
    html = report.read_text()
    # The captions (workflow/report/*.rst), with their wildcards filled in.
    assert "Every measured figure of Tables 1-5" in html and "Table 4 of the paper, measured" in html
    assert "picat only, NOT a table of the paper" in html and "Table fewshot" not in html
    assert "Figure 4 for the pre-trained pointnext backbone" in html and "Figure 2: trainable" in html
    assert "Figure 4&#39;s numbers" in html or "Figure 4's numbers" in html


def test_missing_real_dataset_stops_the_paper_suite_before_any_job(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["suite"] = "paper"
    (tmp_path / "meshes").mkdir()
    config["paper"]["corpus"].update(kind="mesh_folder", root=str(tmp_path / "meshes"))
    config["paper"]["downstream"]["datasets"]["modelnet40"]["root"] = str(tmp_path / "no_such_modelnet")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(tmp_path, "-n", "results/tables.csv")
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Job stats" not in output
    assert "paper.downstream.datasets.modelnet40.root" in output and "no_such_modelnet" in output
    assert "modelnet40_ply_hdf5_2048" in output


def test_invalid_config_stops_before_any_job(workflow_run):
    result = snakemake(workflow_run, "-n", "--config", "suite=everything")
    assert result.returncode != 0
    assert "invalid config key 'suite'" in result.stdout + result.stderr


def test_deleting_one_shard_rebuilds_only_it_and_its_dependents_byte_identically(workflow_run):
    """Runs after the read-only tests: it rebuilds a shard and everything that reads it."""
    shard = workflow_run / "results/shards/demo/shard_00001.h5"
    original = shard.read_bytes()
    shard.unlink()
    jobs, outputs = plan(workflow_run, *TARGETS)
    # That shard's pack and cache only (no render, no other shard), and everything after.
    assert jobs == {"pack": 1, **AFTER_SHARDS, "encode": 1}
    assert {"results/shards/demo/shard_00001.h5", "results/features/demo/shard_00001.h5"} <= outputs
    assert not {"results/shards/demo/shard_00000.h5", "results/features/demo/shard_00000.h5"} & outputs
    assert not from_scratch_or_random(outputs)
    result = snakemake(workflow_run, *TARGETS)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    ran: dict[str, int] = {}
    for rule in re.findall(r"^\s*(?:local)?rule (\w+):$", result.stdout + result.stderr, re.M):
        ran[rule] = ran.get(rule, 0) + 1
    assert ran == jobs  # it ran what it planned, nothing else
    assert shard.read_bytes() == original  # same renders, same seed: the same bytes
    assert planned_jobs(workflow_run, *TARGETS) == {}


def test_killed_pretraining_job_resumes_when_snakemake_runs_again(workflow_run):
    """Kill Snakemake (and its job) mid-training, run again: the job continues from resume.pt.

    Runs last: it retrains the module's checkpoint with more epochs.
    """
    config = changed_config(workflow_run, "pretrain", epochs=40)
    run_dir = workflow_run / "results/pretrain/demo/dgcnn/full/seed0"
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(workflow_run), "--configfile", str(workflow_run / config), "--cores", "2", "--rerun-incomplete",
               "results/pretrain/demo/dgcnn/full/seed0/checkpoint.pt"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while not (run_dir / "resume.pt").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert ((run_dir / "resume.pt").exists()
            and not (run_dir / "checkpoint.pt").exists()), "the job ended before the kill"
    subprocess.run(command[:-4] + ["--unlock"], capture_output=True, check=True)
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    log = (workflow_run / "results/logs/demo/pretrain/dgcnn_full_seed0.log").read_text()
    assert "resuming from" in log
    import picat

    assert len(picat.load_backbone(run_dir / "checkpoint.pt").picat_metadata["history"]) == 40
