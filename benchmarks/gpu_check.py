"""The prepared GPU check (issue 13): one run on one GPU, one CSV of figures.

Parts, each a row group in the CSV (part, name, value, unit, note):

* ``env``: torch version, device, CUDA capability.
* ``tests``: the CUDA-marked tests (``pytest -m cuda``): passed / failed / skipped.
* ``pretrain``: one Pic@Point step per backbone at the paper's sizes (batch 32, 1024
  points, DGCNN k=20 / 1024 channels / 256 local centres, PointNeXt-S, latent 512, cached
  512x7x7 image features as the encode cache holds for 20 views of 224x224 renders), fp32
  (TF32 matmuls) vs bf16 autocast, each with farthest point sampling in every step and with
  the per-object cache the training loop uses: objects/s and peak GPU memory.
* ``semseg``: one PointNeXt-S S3DIS training step (stride-1 first stage) at 24000 points,
  fp32 vs bf16: seconds per step and peak GPU memory.
* ``dag``: the tiny demo DAG (tests/workflow_tiny_demo.yaml) with the paper suite's GPU
  settings (``gpus: 1`` for encode and pre-training, ``amp: auto``): wall seconds and the
  jobs that ran. Rendering needs the BlenderProc environment; on a GPU machine without it,
  prepare the folder on any machine that has it (``--prepare-dag DIR``, CPU-only jobs) and
  pass it with ``--dag-dir DIR``: the GPU machine then runs encode, pre-training and every
  downstream job.

Without CUDA it says so, runs the CPU parts (the tests part, and the step measurements at
``--smoke`` sizes if asked) and exits 0.

    bash benchmarks/gpu_check.sh                       # the whole check, CSV under results/benchmarks/
    python benchmarks/gpu_check.py --prepare-dag .gpucheck/tiny   # CPU machine with the render env
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from picat.accelerator import autocast, prepare_device, resolve_amp  # noqa: E402
from picat.atomic import atomic_path  # noqa: E402
from picat.geometry import dodecahedron_cameras  # noqa: E402
from picat.models.factory import build_point_backbone  # noqa: E402
from picat.models.segmentation import PointNeXtSegmenter, segmentation_encoder  # noqa: E402
from picat.pretrain.correspondence import random_rotations  # noqa: E402
from picat.pretrain.engine import TrainSettings, step_loss  # noqa: E402
from picat.pretrain.model import PicAtPoint  # noqa: E402

FIELDS = ("part", "name", "value", "unit", "note")


class Report:
    """Rows of the CSV, rewritten (atomically) after every row so a killed run keeps what it measured."""

    def __init__(self, path: Path) -> None:
        self.path, self.rows = path, []

    def add(self, part: str, name: str, value: object, unit: str = "", note: str = "") -> None:
        row = {"part": part, "name": name, "value": value, "unit": unit, "note": note}
        self.rows.append(row)
        print(f"[gpu_check] {part:9s} {name:42s} {value!s:>12s} {unit:10s} {note}", flush=True)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(self.rows)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(step: Callable[[int], None], device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of ``repeats`` calls of ``step`` after ``warmup`` calls."""
    for index in range(warmup):
        step(index)
    synchronize(device)
    times = []
    for index in range(repeats):
        started = time.perf_counter()
        step(warmup + index)
        synchronize(device)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def peak_mb(device: torch.device) -> float | str:
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1) if device.type == "cuda" else "n/a"


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def pretrain_step_rate(backbone_name: str, amp: str, device: torch.device, batch: int, points: int,
                       warmup: int, repeats: int, cached_samples: bool = False) -> tuple[float, float, float | str]:
    """(objects per second, loss of the first step, peak MB) of full Pic@Point training steps.

    ``cached_samples``: the farthest point samples come with the batch, as the training loop
    hands them out (computed once per object, :mod:`picat.pretrain.samples`), instead of
    being picked in every step.
    """
    torch.manual_seed(0)
    options = {"k": 20, "emb_dims": 1024, "local_centres": 256} if backbone_name == "dgcnn" else {}
    model = PicAtPoint(build_point_backbone(backbone_name, options), 512, "full", 512, 64).to(device)
    optimizer = torch.optim.Adam([{"params": model.point_parameters(), "lr": 1e-3},
                                  {"params": model.image_parameters(), "lr": 5e-5}], weight_decay=1e-6)
    settings = TrainSettings(epochs=1, batch_size=batch, amp=amp)
    views, projs = dodecahedron_cameras(2.5, 50.0)
    generator = torch.Generator().manual_seed(0)
    data = {
        "points": (torch.randn(batch, points, 3, generator=generator) * 0.4).to(device),
        "view": torch.tensor(views[:1], dtype=torch.float32).expand(batch, 4, 4).contiguous().to(device),
        "proj": torch.tensor(projs[:1], dtype=torch.float32).expand(batch, 4, 4).contiguous().to(device),
        "image_local": torch.randn(batch, 512, 7, 7, generator=generator).to(device),
        "image_global": torch.randn(batch, 512, generator=generator).to(device),
    }
    if cached_samples:
        data["samples"] = model.backbone.sample_indices(data["points"])
    rotations = [random_rotations(batch, "so3", generator=torch.Generator().manual_seed(i)).to(device)
                 for i in range(warmup + repeats)]
    first_loss: list[float] = []

    def step(index: int) -> None:
        losses = step_loss(model, data, rotations[index], settings)
        optimizer.zero_grad(set_to_none=True)
        losses["objective"].backward()
        optimizer.step()
        if index == 0:
            first_loss.append(float(losses["loss"]))

    reset_peak(device)
    seconds = timed_steps(step, device, warmup, repeats)
    return batch / seconds, first_loss[0], peak_mb(device)


def semseg_step_seconds(amp: str, device: torch.device, batch: int, points: int, warmup: int,
                        repeats: int) -> tuple[float, float | str]:
    """(seconds per step, peak MB) of PointNeXt-S S3DIS training steps (radius 0.1, strides 1,4,4,4,4)."""
    torch.manual_seed(0)
    encoder, _ = segmentation_encoder(None, seed=0)
    model = PointNeXtSegmenter(encoder, 13).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=1e-4)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.2)
    generator = torch.Generator().manual_seed(0)
    # A 3 m x 3 m x 3 m crop, about the extent of 24000 points at 0.04 m voxels.
    xyz = (torch.rand(batch, points, 3, generator=generator) * 3.0).to(device)
    colours = torch.rand(batch, points, 3, generator=generator).to(device)
    labels = torch.randint(0, 13, (batch, points), generator=generator).to(device)

    def step(index: int) -> None:
        with autocast(device, amp):
            logits = model(xyz, colours)
        loss = criterion(logits.float().reshape(-1, 13), labels.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    reset_peak(device)
    return timed_steps(step, device, warmup, repeats), peak_mb(device)


def fps_eager_vs_graphs(report: Report, device: torch.device, smoke: bool) -> None:
    """Farthest point sampling on CUDA: the eager loop vs replayed CUDA graphs, same picks?"""
    from picat.models import ops

    cases = [(4, 256, 128)] if smoke else [(32, 1024, 512), (2, 24000, 6000)]
    for batch, points, picks in cases:
        xyz = torch.rand(batch, points, 3, generator=torch.Generator().manual_seed(0)).to(device)
        results: dict[bool, torch.Tensor] = {}
        for graphs in (False, True):
            def pick(_: int, graphs: bool = graphs, xyz: torch.Tensor = xyz, picks: int = picks,
                     results: dict = results) -> None:
                results[graphs] = ops.farthest_point_sample(xyz, picks)

            previous = ops.set_fps_cuda_graphs(graphs)
            try:
                seconds = timed_steps(pick, device, 1, 3)
            finally:
                ops.set_fps_cuda_graphs(previous)
            report.add("fps", f"b{batch}_n{points}_s{picks}_{'graphs' if graphs else 'eager'}_ms",
                       round(1000 * seconds, 2), "ms", "CUDA graph replay" if graphs else "eager loop")
        report.add("fps", f"b{batch}_n{points}_s{picks}_identical", bool(torch.equal(results[False], results[True])))


def run_tests(report: Report, timeout: int) -> None:
    command = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", str(REPO / "tests")]
    started = time.time()
    try:
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        report.add("tests", "cuda_marked", "timeout", "", f"over {timeout} s")
        return
    tail = (result.stdout + result.stderr).strip().splitlines()
    summary = tail[-1] if tail else ""
    print("\n".join(tail[-30:]), flush=True)
    for outcome in ("passed", "failed", "skipped", "error", "deselected"):
        found = re.search(rf"(\d+) {outcome}", summary)
        report.add("tests", outcome, int(found.group(1)) if found else 0, "tests",
                   f"pytest -m cuda, rc {result.returncode}, {time.time() - started:.0f} s")


def tiny_dag_config(dag_dir: Path, render_env: str) -> Path:
    """config.yaml with the tiny demo block and the paper suite's GPU settings, written into ``dag_dir``."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["demo"] = yaml.safe_load((REPO / "tests" / "workflow_tiny_demo.yaml").read_text())["demo"]
    config["render_env"] = render_env
    config["demo"]["amp"] = "auto"
    config["demo"]["pretrain"]["gpus"] = 1
    config["demo"]["encode"]["gpus"] = 1
    path = dag_dir / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(dag_dir: Path, *args: str, timeout: int) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(dag_dir),
               f"--configfile={dag_dir / 'config.yaml'}", *args]  # "=": the option takes several values
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


# What the tiny DAG makes without a GPU or the network: renders and shards (BlenderProc), the
# stand-in datasets and the converted S3DIS rooms.
CPU_ONLY_TARGETS = ("shards", "results/datasets/demo", "results/seg_datasets/demo", "results/s3dis/demo/rooms")


def prepare_dag(dag_dir: Path, render_env: Path) -> int:
    """Run the tiny DAG's CPU-only jobs (render, pack, stand-in datasets) into ``dag_dir``.

    The render environment is named through a folder of its own holding only the stamp file,
    so the folder can travel to a machine that has no render environment.
    """
    dag_dir.mkdir(parents=True, exist_ok=True)
    stamp = render_env / "picat-render-env.json"
    if not stamp.is_file():
        print(f"[gpu_check] {stamp} is missing: build the render environment first (picat render-env)")
        return 1
    local_env = dag_dir / "render_env"
    if local_env.is_symlink() or local_env.is_file():
        local_env.unlink()
    local_env.symlink_to(render_env.resolve(), target_is_directory=True)
    tiny_dag_config(dag_dir, "render_env")
    result = snakemake(dag_dir, *CPU_ONLY_TARGETS, "--cores", str(os.cpu_count() or 2), timeout=3600)
    print(result.stdout[-3000:], result.stderr[-3000:])
    # Keep the stamp alone: the travelling folder names an environment only as "already built".
    local_env.unlink()
    local_env.mkdir()
    shutil.copy2(stamp, local_env / stamp.name)
    return result.returncode


def run_dag(report: Report, dag_dir: Path | None, timeout: int, cores: int) -> None:
    if shutil.which("snakemake") is None and subprocess.run([sys.executable, "-c", "import snakemake"],
                                                            capture_output=True).returncode != 0:
        report.add("dag", "tiny_demo_gpus1", "skipped", "", "snakemake is not installed")
        return
    if dag_dir is None or not (dag_dir / "results").is_dir():
        report.add("dag", "tiny_demo_gpus1", "skipped", "", "no prepared --dag-dir (render with --prepare-dag first)")
        return
    tiny_dag_config(dag_dir, "render_env")
    # The prepared files may have travelled with new modification times: mark them up to date.
    touch = snakemake(dag_dir, *CPU_ONLY_TARGETS, "--cores", "1", "--touch", timeout=300)
    if touch.returncode != 0:
        report.add("dag", "tiny_demo_gpus1", "touch failed", "", touch.stderr[-300:].replace("\n", " "))
        return
    started = time.time()
    try:
        result = snakemake(dag_dir, "--cores", str(cores), "--resources", "gpu=1", "results/tables.csv",
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        report.add("dag", "tiny_demo_gpus1", "timeout", "s", f"over {timeout} s")
        return
    seconds = time.time() - started
    text = result.stdout + result.stderr
    print(text[-4000:], flush=True)
    jobs = re.findall(r"^rule (\w+):", result.stdout + result.stderr, re.M)
    counts = {rule: jobs.count(rule) for rule in sorted(set(jobs))}
    report.add("dag", "tiny_demo_gpus1_rc", result.returncode, "", " ".join(f"{k}={v}" for k, v in counts.items()))
    report.add("dag", "tiny_demo_gpus1_seconds", round(seconds, 1), "s", "snakemake results/tables.csv")
    logs = sorted((dag_dir / "results" / "logs").rglob("*.log"))
    on_cuda = [log for log in logs if "cuda" in log.read_text(errors="replace")]
    report.add("dag", "logs_naming_cuda", len(on_cuda), "logs", f"of {len(logs)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "results" / "benchmarks" / "gpu_check.csv")
    parser.add_argument("--dag-dir", type=Path, help="a folder prepared with --prepare-dag")
    parser.add_argument("--prepare-dag", type=Path, metavar="DIR", help="run the CPU-only jobs of the tiny DAG, exit")
    parser.add_argument("--render-env", type=Path, default=REPO / ".envs" / "render")
    parser.add_argument("--skip", nargs="*", default=[], choices=["tests", "fps", "pretrain", "semseg", "dag"])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (checks the script; no figures)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dag-timeout", type=int, default=240)
    args = parser.parse_args()
    if args.prepare_dag:
        return prepare_dag(args.prepare_dag.resolve(), args.render_env)

    device = torch.device(args.device)
    report = Report(args.out)
    report.add("env", "torch", torch.__version__)
    if device.type != "cuda":
        report.add("env", "cuda", "absent", "", "no CUDA device: only the CPU parts run; no GPU figures")
    else:
        prepare_device(device)
        props = torch.cuda.get_device_properties(device)
        report.add("env", "device", props.name.replace(",", " "), "",
                   f"capability {props.major}.{props.minor}, {props.total_memory / 2**30:.0f} GiB")
    if "tests" not in args.skip:
        run_tests(report, timeout=240)
    measure_steps = device.type == "cuda" or args.smoke
    if not measure_steps:
        report.add("pretrain", "all", "skipped", "", "no CUDA device (run with --smoke to exercise the code on CPU)")
    batch, points, warmup, repeats = (4, 256, 1, 1) if args.smoke else (32, 1024, 3, 10)
    if device.type == "cuda" and "fps" not in args.skip:
        fps_eager_vs_graphs(report, device, args.smoke)
    if measure_steps and "pretrain" not in args.skip:
        for backbone in ("dgcnn", "pointnext"):
            for amp, cached in (("fp32", False), ("bf16", False), ("fp32", True), ("bf16", True)):
                rate, loss, peak = pretrain_step_rate(backbone, amp, device, batch, points, warmup, repeats, cached)
                precision = resolve_amp(amp, device) + ("+tf32" if device.type == "cuda" and amp == "fp32" else "")
                name = f"{backbone}_{amp}" + ("_cached_fps" if cached else "")
                fps = "FPS cached per object" if cached else "FPS in every step"
                report.add("pretrain", f"{name}_objects_per_s", round(rate, 1), "objects/s",
                           f"batch {batch}, {points} points, {precision}, {fps}, first-step loss {loss:.4f}")
                report.add("pretrain", f"{name}_peak_mb", peak, "MB")
    if measure_steps and "semseg" not in args.skip:
        seg_points, seg_batches = (2000, (2,)) if args.smoke else (24000, (2, 8))
        for seg_batch in seg_batches:
            for amp in ("fp32", "bf16"):
                try:
                    seconds, peak = semseg_step_seconds(amp, device, seg_batch, seg_points, 1 if args.smoke else 2,
                                                        1 if args.smoke else 5)
                except torch.OutOfMemoryError as error:
                    report.add("semseg", f"b{seg_batch}_{amp}", "out of memory", "", str(error)[:120])
                    continue
                report.add("semseg", f"b{seg_batch}_{amp}_s_per_step", round(seconds, 4), "s",
                           f"PointNeXt-S S3DIS, {seg_points} points, batch {seg_batch}")
                report.add("semseg", f"b{seg_batch}_{amp}_peak_mb", peak, "MB")
    if "dag" not in args.skip:
        run_dag(report, args.dag_dir.resolve() if args.dag_dir else None, args.dag_timeout, os.cpu_count() or 2)
    print(f"[gpu_check] wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
