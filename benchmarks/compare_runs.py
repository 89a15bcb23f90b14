"""Compare two workflow result trees (e.g. the same suite and seeds before and after a refactor).

    python benchmarks/compare_runs.py RUN_A RUN_B

RUN_A and RUN_B are workflow directories (each with a ``results/`` folder). Reported:
every downstream record present in both (timing fields stripped), every pre-training
checkpoint present in both (all tensors, exact), every shard and feature cache (dataset by
dataset, exact; attributes other than timings), and the tables (byte for byte).
Exit code 1 when anything present in both differs.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import torch

TIMING_KEYS = {"seconds", "seconds_per_view", "objects_per_s", "build_seconds"}


def strip_timings(value):
    """``value`` without the keys that measure time (they differ between any two runs)."""
    if isinstance(value, dict):
        return {k: strip_timings(v) for k, v in value.items() if k not in TIMING_KEYS and not k.endswith("_seconds")}
    if isinstance(value, list):
        return [strip_timings(v) for v in value]
    return value


def compare_h5(a_path: Path, b_path: Path) -> str:
    """"identical", or what differs first between two HDF5 files."""
    with h5py.File(a_path, "r") as a, h5py.File(b_path, "r") as b:
        datasets: list[dict[str, np.ndarray]] = []
        for handle in (a, b):
            found: dict[str, np.ndarray] = {}
            handle.visititems(lambda name, obj, found=found: found.update(
                {name: obj[()]}) if isinstance(obj, h5py.Dataset) else None)
            datasets.append(found)
        if set(datasets[0]) != set(datasets[1]):
            return f"datasets differ: {sorted(set(datasets[0]) ^ set(datasets[1]))}"
        for name, value in datasets[0].items():
            if value.shape != datasets[1][name].shape or not np.array_equal(value, datasets[1][name]):
                return f"{name} differs"
        attributes = [{k: str(v) for k, v in handle.attrs.items() if k not in TIMING_KEYS} for handle in (a, b)]
        if attributes[0] != attributes[1]:
            return f"attributes differ: {sorted(k for k in attributes[0] if attributes[0][k] != attributes[1].get(k))}"
    return "identical"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", type=Path)
    parser.add_argument("run_b", type=Path)
    args = parser.parse_args(argv)
    a_root, b_root = args.run_a / "results", args.run_b / "results"
    differ = 0
    counts = {"records": [0, 0], "checkpoints": [0, 0]}
    for a in sorted((a_root / "downstream").rglob("*.json")):
        b = b_root / a.relative_to(a_root)
        if b.exists():
            same = strip_timings(json.loads(a.read_text())) == strip_timings(json.loads(b.read_text()))
            counts["records"][0 if same else 1] += 1
            if not same:
                print(f"record differs: {a.relative_to(a_root)}")
    for a in sorted((a_root / "pretrain").rglob("checkpoint.pt")):
        b = b_root / a.relative_to(a_root)
        if b.exists():
            pa, pb = torch.load(a, weights_only=False), torch.load(b, weights_only=False)
            same = all(set(pa[key]) == set(pb[key]) and all(torch.equal(pa[key][n], pb[key][n]) for n in pa[key])
                       for key in ("state_dict", "pretrain_state_dict"))
            counts["checkpoints"][0 if same else 1] += 1
            if not same:
                print(f"checkpoint differs: {a.relative_to(a_root)}")
    for kind, (same, other) in counts.items():
        print(f"{kind} in both runs: {same} identical, {other} differ")
        differ += other
    for sub in ("renders", "shards", "features"):
        for a in sorted((a_root / sub).rglob("*.h5")):
            b = b_root / a.relative_to(a_root)
            if b.exists():
                verdict = compare_h5(a, b)
                differ += verdict != "identical"
                print(f"{a.relative_to(a_root)}: {verdict}")
    for a in [a_root / "tables.csv", *sorted((a_root / "tables").glob("*.csv"))]:
        b = b_root / a.relative_to(a_root)
        if a.exists() and b.exists():
            same = filecmp.cmp(a, b, shallow=False)
            differ += not same
            print(f"{a.relative_to(a_root)}: {'identical' if same else 'differs'}")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
