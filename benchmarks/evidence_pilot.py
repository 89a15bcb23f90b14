"""Pilot for the evidence suite: does pre-training transfer, and after how many epochs?

Pre-trains one (backbone, variant, seed) on a suite's shards with the suite's settings (or
``--set key=value`` overrides) and, every ``--eval-every`` epochs and for the random init,
probes the frozen global features on VALIDATION objects only: the stand-in generator's
``val`` split (``picat.demo.seeding.SPLITS``), never the test split the suite reports. So
settings chosen from this pilot are chosen on validation data (issue 12).

Validation tasks (the evidence stand-ins' settings: all 25 categories, random yaw):

* ``clean``: complete objects (ModelNet40-like);
* ``obj_bg``: single-view scans with background (ScanObjectNN OBJ_BG-like).

Per category, objects 0..P-1 of the val split are the probe's training pool and objects
P..2P-1 its evaluation set. Each task reports the 5-shot probe (fixed C, 10 seeded draws,
``picat.downstream.fewshot``) and the linear SVM on the whole pool (C by CV on the pool).

    python benchmarks/evidence_pilot.py --suite evidence --backbone dgcnn --variant full \\
        --epochs 12 --eval-every 3 --out /tmp/pilot > /tmp/pilot.txt

Writes ``<out>/pilot.csv`` (one row per evaluation) and keeps the run folder in ``<out>``.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from picat import load_backbone
from picat.demo.classification import clean_objects, scan_variants
from picat.demo.part_mesh import ALL_CATEGORIES, CATEGORIES
from picat.downstream.backbones import random_backbone
from picat.downstream.fewshot import FewshotSettings, probe
from picat.downstream.svm import extract_features
from picat.models.factory import build_point_backbone
from picat.pretrain.engine import RESUME_FILE
from picat.pretrain.model import PicAtPoint, VariantSettings
from picat.stages.pretrain import run_pretraining


def validation_tasks(per_category: int, categories: tuple[str, ...], seed: int) -> dict[str, tuple]:
    """{task: (pool points, pool labels, eval points, eval labels)} from the val split only."""
    n = 2 * per_category
    sets = {"clean": clean_objects(n, 1024, seed, "val", categories, yaw="random"),
            "obj_bg": scan_variants(("obj_bg",), n, 1024, seed, "val", categories, yaw="random")["obj_bg"]}
    tasks = {}
    for name, standin in sets.items():
        in_pool = (np.arange(len(standin.labels)) % n) < per_category  # category-major: object i at c * n + i
        tasks[name] = (standin.points[in_pool], standin.labels[in_pool], standin.points[~in_pool],
                       standin.labels[~in_pool])
    return tasks


def evaluate(backbone: torch.nn.Module, tasks: dict[str, tuple], seed: int) -> dict[str, float]:
    """5-shot mean and whole-pool SVM accuracy (%) per task."""
    settings = FewshotSettings(shots=(5, "all"), draws=10)
    quiet = io.StringIO()
    out = {}
    for name, (pool, pool_y, test, test_y) in tasks.items():
        train_x = extract_features(backbone, pool, 1024, 32, log=quiet)
        test_x = extract_features(backbone, test, 1024, 32, log=quiet)
        result = probe(train_x, pool_y, test_x, test_y, [str(i) for i in range(pool_y.max() + 1)], settings, seed,
                       n_jobs=torch.get_num_threads(), log=quiet)
        out[f"{name}_5shot"], out[f"{name}_all"] = result["5"]["mean"], result["all"]["mean"]
    return out


def backbone_of_resume(state: dict, name: str, options: dict, variant: str, settings: dict) -> torch.nn.Module:
    """The point backbone inside a run's resume state (``state["model"]``, eval mode)."""
    model_state = state["model"]
    head = "image_local" if "image_local.layers.0.weight" in model_state else "image_global"
    image_dim = int(model_state[f"{head}.layers.0.weight"].shape[1])  # the frozen image features' width
    model = PicAtPoint(build_point_backbone(name, options, VariantSettings.of(variant).normals, "y"), image_dim,
                       variant, settings["latent_dim"], settings["pose_dim"])
    model.load_state_dict(model_state)
    backbone = model.backbone.eval()
    backbone.picat_metadata = {"normals": VariantSettings.of(variant).normals}
    return backbone


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--suite", default="evidence")
    parser.add_argument("--backbone", default="dgcnn")
    parser.add_argument("--variant", default="full")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None, help="default: the suite's")
    parser.add_argument("--eval-every", type=int, default=3)
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="pretrain setting overrides")
    parser.add_argument("--per-category", type=int, default=10, help="val objects per category in pool and eval")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    suite = yaml.safe_load(Path(args.config).read_text())[args.suite]
    settings = dict(suite["pretrain"])
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key] = yaml.safe_load(value)
    if args.epochs:
        settings["epochs"] = args.epochs
    shards = sorted(Path(f"results/shards/{args.suite}").glob("shard_*.h5"))
    features = [Path(f"results/features/{args.suite}/{path.name}") for path in shards]
    if not shards or not all(path.is_file() for path in features):
        sys.exit(f"results/shards/{args.suite} and its feature caches must exist (snakemake ... --config "
                 f"suite={args.suite} and the encode jobs)")
    categories = ALL_CATEGORIES if suite["corpus"].get("categories") == "all" else CATEGORIES
    started = time.time()
    tasks = validation_tasks(args.per_category, categories, seed=0)
    print(f"validation tasks built in {time.time() - started:.0f} s ({len(categories)} categories, "
          f"{args.per_category} pool + {args.per_category} eval objects each); settings {settings}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []

    def record(epoch: int, backbone: torch.nn.Module, seconds: float) -> None:
        row = {"epoch": epoch, "pretrain_seconds": round(seconds), **evaluate(backbone, tasks, args.seed),
               "settings": " ".join(args.set)}
        rows.append(row)
        print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()), flush=True)
        with open(args.out / "pilot.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)

    options = dict(settings[args.backbone])
    record(0, random_backbone(args.backbone, options, args.seed, "y"), 0.0)
    output = args.out / "checkpoint.pt"
    trained, seconds = 0, 0.0
    if (args.out / RESUME_FILE).is_file():  # an interrupted pilot resumes where its resume state stands
        trained = int(torch.load(args.out / RESUME_FILE, map_location="cpu", weights_only=False)["epoch"])
        print(f"resuming after epoch {trained}", flush=True)
    while trained < settings["epochs"]:
        step = min(args.eval_every, settings["epochs"] - trained)
        started = time.time()
        done = run_pretraining(shards, features, output, args.backbone, args.variant, args.seed, settings, "y",
                               args.suite, stop_after_epochs=trained + step, log=sys.stderr)  # a total count
        seconds += time.time() - started
        trained += step
        if done is not None:
            backbone = load_backbone(done)
        else:
            state = torch.load(args.out / RESUME_FILE, map_location="cpu", weights_only=False)
            backbone = backbone_of_resume(state, args.backbone, options, args.variant, settings)
        record(trained, backbone, seconds)


if __name__ == "__main__":
    main()
