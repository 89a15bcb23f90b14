"""benchmarks/gpu_check.py, the prepared GPU check: on a machine without CUDA it says so, exits 0,
and (with --smoke) exercises every measurement at tiny sizes on the CPU."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.py"

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA behaviour")


def run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, list[dict[str, str]]]:
    out = tmp_path / "gpu_check.csv"
    result = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out), *args], capture_output=True, text=True,
                            timeout=600, cwd=tmp_path)
    rows = list(csv.DictReader(out.open())) if out.is_file() else []
    return result, rows


def test_without_cuda_it_says_so_and_exits_0(tmp_path):
    result, rows = run(tmp_path, "--skip", "tests", "dag")
    assert result.returncode == 0, result.stderr[-2000:]
    by_name = {(row["part"], row["name"]): row for row in rows}
    assert by_name[("env", "cuda")]["value"] == "absent" and "no CUDA" in by_name[("env", "cuda")]["note"]
    assert by_name[("pretrain", "all")]["value"] == "skipped"
    assert not any(row["part"] == "semseg" for row in rows)


def test_smoke_run_measures_every_step_on_the_cpu(tmp_path):
    result, rows = run(tmp_path, "--smoke", "--skip", "tests", "dag")
    assert result.returncode == 0, result.stderr[-2000:]
    values = {(row["part"], row["name"]): row["value"] for row in rows}
    for backbone in ("dgcnn", "pointnext"):
        for amp in ("fp32", "bf16"):
            assert float(values[("pretrain", f"{backbone}_{amp}_objects_per_s")]) > 0
    notes = {row["name"]: row["note"] for row in rows if row["part"] == "pretrain"}
    # bf16 autocast ran on the CPU and its first loss is close to fp32's (same model and batch).
    for backbone in ("dgcnn", "pointnext"):
        fp32 = float(notes[f"{backbone}_fp32_objects_per_s"].rsplit(" ", 1)[1])
        bf16 = float(notes[f"{backbone}_bf16_objects_per_s"].rsplit(" ", 1)[1])
        assert abs(bf16 - fp32) < 0.05 * abs(fp32), (backbone, fp32, bf16)
    for amp in ("fp32", "bf16"):
        assert float(values[("semseg", f"b2_{amp}_s_per_step")]) > 0
    dag = {row["name"]: row for row in rows if row["part"] == "dag"}
    assert not dag  # skipped on request
