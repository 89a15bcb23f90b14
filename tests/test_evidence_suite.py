"""The evidence suite's DAG (issue 12): a dry run of the real workflow on a shrunken copy of its block.

Runs the two corpus checkpoints for real (a few synthetic meshes), then plans
``results/tables.csv`` and checks which jobs the suite asks for: pre-training at 1024
points and batch 32 for every configured run and seed, the frozen-feature protocols on all
four classification stand-ins, the correspondence metric on held-out shards, 8-view renders,
and no fine-tuning or segmentation job.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def plan_of_evidence_suite(tmp_path: Path) -> str:
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["suite"] = "evidence"
    config["render_env"] = str(tmp_path / "no-render-env")
    evidence = config["evidence"]
    evidence["corpus"].update(n_objects=6, heldout_objects=3)  # small enough to generate in seconds
    evidence["shards"]["objects_per_shard"] = 4
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))

    def snakemake(*args: str) -> str:
        command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
                   str(tmp_path), "--configfile", str(tmp_path / "config.yaml"), "--cores", "1", *args]
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    snakemake("results/corpus/evidence", "results/heldout_corpus/evidence")
    return snakemake("-n", "--printshellcmds", "results/tables.csv")


def test_evidence_suite_plans_the_runs_and_protocols_it_promises(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())["evidence"]
    plan = plan_of_evidence_suite(tmp_path)
    lines = plan.splitlines()

    pretrain = [line for line in lines if "picat pretrain" in line]
    expected_runs = {(backbone, variant, seed) for backbone, variants in config["pretrain"]["runs"].items()
                     for variant in variants for seed in config["pretrain"]["seeds"]}
    planned_runs = {(re.search(r"--backbone (\w+)", line)[1], re.search(r"--variant (\w+)", line)[1],
                     int(re.search(r"--seed (\d+)", line)[1])) for line in pretrain}
    assert planned_runs == expected_runs and len(pretrain) == len(expected_runs)
    assert all("--suite evidence" in line and "heldout" not in line for line in pretrain)
    settings = json.loads(re.search(r"--settings '([^']+)'", pretrain[0])[1])
    assert (settings["n_points"], settings["batch_size"]) == (1024, 32)

    renders = [line for line in lines if "picat render " in line]
    assert len(renders) == 3  # two training shards of at most 4 meshes and one held-out shard
    assert all('"cameras": "cube"' in line for line in renders)

    for protocol in ("finetune", "partseg", "semseg", "seg-standins", "s3dis-convert"):
        assert not [line for line in lines if f"picat {protocol} " in line], protocol
    svm = [line for line in lines if "picat svm " in line]
    benchmarks = {re.search(r"--benchmark (\w+)", line)[1] for line in svm}
    assert benchmarks == set(config["downstream"]["svm"]["benchmarks"])
    fewshot = [line for line in lines if "picat fewshot " in line]
    assert fewshot and {re.search(r"--benchmark (\w+)", line)[1] for line in fewshot} == set(
        config["downstream"]["fewshot"]["benchmarks"])
    correspondence = [line for line in lines if "picat correspondence " in line]
    n_metric_runs = sum(len(set(variants) & set(config["correspondence"]["variants"]))
                        for variants in config["pretrain"]["runs"].values()) * len(config["pretrain"]["seeds"])
    assert len(correspondence) == n_metric_runs
    assert all("heldout_00000" in line and "shard_0" not in line for line in correspondence)
    standins = [line for line in lines if "picat standins " in line]
    assert len(standins) == 1 and '"scan_yaw": "random"' in standins[0] and '"categories": "all"' in standins[0]
