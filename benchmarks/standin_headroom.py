"""How hard is each classification stand-in? Random-init linear-SVM accuracy per benchmark.

Issue 12 asks that random-init features do NOT solve the stand-ins (linear SVM at or below
85 %), so that pre-training has room to show itself. This script builds the stand-ins with a
suite's ``standins`` settings (through the same ``picat standins`` code the workflow runs),
reads them back with the real readers, and runs the SVM protocol (``picat.downstream.svm``:
C by cross-validation on the training split only, one look at the test split) on features of
randomly initialised backbones, for several init seeds. It prints one line per
(benchmark, backbone) with mean ± std over seeds and writes the same as CSV.

    python benchmarks/standin_headroom.py --suite evidence --seeds 0 1 2 --out /tmp/headroom.csv
    python benchmarks/standin_headroom.py --suite demo --set train_per_category=10

The generated stand-ins go to a temporary folder unless ``--keep DIR`` is given.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from picat.datasets import read_classification
from picat.downstream.backbones import random_backbone
from picat.downstream.svm import SvmSettings, extract_features, fit_and_score
from picat.stages.standins import build_standins

BENCHMARKS = {
    "modelnet40": {"format": "modelnet40_h5", "root": "modelnet40_ply_hdf5_2048"},
    "scanobjectnn_obj_only": {"format": "scanobjectnn", "root": "h5_files", "variant": "obj_only"},
    "scanobjectnn_obj_bg": {"format": "scanobjectnn", "root": "h5_files", "variant": "obj_bg"},
    "scanobjectnn_pb_t50_rs": {"format": "scanobjectnn", "root": "h5_files", "variant": "pb_t50_rs"},
}


def parse_value(text: str) -> object:
    """A ``--set`` value as YAML reads it (numbers, lists, booleans)."""
    return yaml.safe_load(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--suite", default="demo")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="override standins settings")
    parser.add_argument("--backbones", nargs="+", default=["dgcnn", "pointnext"])
    parser.add_argument("--benchmarks", nargs="+", default=list(BENCHMARKS), choices=list(BENCHMARKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--n-points", type=int, default=1024)
    parser.add_argument("--keep", type=Path, default=None, help="write the stand-ins here and keep them")
    parser.add_argument("--out", type=Path, default=None, help="CSV of the per-seed accuracies")
    args = parser.parse_args()
    torch.set_num_threads(2)
    config = yaml.safe_load(Path(args.config).read_text())
    suite = config[args.suite]
    settings = dict(suite["standins"])
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key] = parse_value(value)
    options = {name: suite["pretrain"].get(name, {}) for name in args.backbones}
    up_axis = suite["corpus"]["up_axis"]
    svm = SvmSettings.of({k: v for k, v in suite["downstream"]["svm"].items() if k not in ("backbone", "benchmarks")})
    svm = SvmSettings(**{**svm.__dict__, "n_points": args.n_points})
    root = args.keep or Path(tempfile.mkdtemp(prefix="picat-headroom-"))
    started = time.time()
    build_standins(settings, root, log=sys.stderr)
    print(f"stand-ins {settings} built in {time.time() - started:.0f} s under {root}", flush=True)
    rows = []
    quiet = io.StringIO()  # no progress bars per feature pass
    for benchmark in args.benchmarks:
        spec = {**BENCHMARKS[benchmark], "root": str(root / BENCHMARKS[benchmark]["root"])}
        train, test = read_classification(spec, "train"), read_classification(spec, "test")
        for name in args.backbones:
            accuracies = []
            for seed in args.seeds:
                backbone = random_backbone(name, options[name], seed, up_axis)
                train_x = extract_features(backbone, train.points, svm.n_points, svm.batch_size, log=quiet)
                test_x = extract_features(backbone, test.points, svm.n_points, svm.batch_size, log=quiet)
                result = fit_and_score(train_x, train.labels, test_x, test.labels, svm, seed, n_jobs=2)
                accuracies.append(result["accuracy"])
                rows.append({"benchmark": benchmark, "backbone": name, "seed": seed, "accuracy": result["accuracy"],
                             "best_c": result["best_c"], "n_train": len(train.labels), "n_test": len(test.labels),
                             "classes": len(train.class_names), "settings": repr(settings)})
            print(f"{benchmark:24s} {name:9s} random-init SVM {np.mean(accuracies):5.1f} ± "
                  f"{np.std(accuracies, ddof=1) if len(accuracies) > 1 else 0.0:4.1f} (n={len(accuracies)}; "
                  f"{len(train.labels)} train / {len(test.labels)} test, {len(train.class_names)} classes)", flush=True)
    if args.out:
        with open(args.out, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
