"""Round trips of every ``picat convert`` format, through the real command line.

For each format: a picat checkpoint (a backbone with every parameter and BatchNorm statistic
randomised with seeded positive values, paper-size settings) is exported with ``picat convert --to FORMAT``,
imported back with ``--from FORMAT``, and exported once more. Printed per format: the number of
tensors, the largest absolute difference picat -> outside -> picat (weights), outside ->
picat -> outside (the outside file's tensors), and between the original and the re-imported
backbone's features on one seeded cloud. Exact conversion gives 0 for the weights.

Usage::

    python benchmarks/convert_roundtrip.py [--workdir /tmp/convert_roundtrip]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch import nn

from picat.cli import main as picat_main
from picat.models.factory import backbone_checkpoint, build_point_backbone, load_backbone

# (format, backbone, options): the paper's sizes (DGCNN k=20, 1024 channels; PointNeXt-S).
CASES = (
    ("dgcnn-official", "dgcnn", {"k": 20, "emb_dims": 1024}),
    ("crosspoint", "dgcnn", {"k": 20, "emb_dims": 1024}),
    ("openpoints-pointnext", "pointnext", {}),
)


def randomise(model: nn.Module, seed: int) -> nn.Module:
    """Every parameter and floating buffer set to seeded random positive values (|N(0,1)| / 10
    + 0.01: positive so that BatchNorm variances stay valid), so that no tensor is at its
    initial value and a swapped pair of tensors would show. (tests/ has its own randomisers;
    a benchmark does not import from tests.)"""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point():
                tensor.copy_(torch.randn(tensor.shape, generator=generator).abs_() * 0.1 + 0.01)
    return model


def outside_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The state_dict an outside file holds (OpenPoints wraps it under "model")."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    return payload.get("model", payload)


def max_difference(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> float:
    """The largest absolute difference over tensors of the same names (keys must match)."""
    if first.keys() != second.keys():
        raise SystemExit(f"key sets differ: {sorted(first.keys() ^ second.keys())[:10]}")
    return max((a.double() - b.double()).abs().max().item() if a.numel() else 0.0
               for a, b in ((first[k], second[k]) for k in first))


def round_trip(workdir: Path, format_name: str, backbone: str, options: dict) -> str:
    model = randomise(build_point_backbone(backbone, options), seed=7)
    original = workdir / f"{format_name}.picat.pt"
    torch.save(backbone_checkpoint(backbone, options, False, "y", model, {"variant": "roundtrip"}), original)
    outside, back, outside_again = (workdir / f"{format_name}.{name}" for name in ("outside.pt", "back.pt", "again.pt"))
    for argv in (["convert", str(original), str(outside), "--to", format_name],
                 ["convert", str(outside), str(back), "--from", format_name],
                 ["convert", str(back), str(outside_again), "--to", format_name]):
        picat_main(argv)
    weights = max_difference(torch.load(original, weights_only=False)["state_dict"],
                             torch.load(back, weights_only=False)["state_dict"])
    outside_state, outside_state_again = outside_tensors(outside), outside_tensors(outside_again)
    outside_diff = max_difference(outside_state, outside_state_again)
    cloud = torch.randn(2, 1024, 3, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        features = (load_backbone(original)(cloud) - load_backbone(back)(cloud)).abs().max().item()
    return (f"| {format_name} | {backbone} | {len(outside_state)} | {weights:.1e} | {outside_diff:.1e} | "
            f"{features:.1e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, help="keep the files here (default: a temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        workdir = args.workdir or Path(temporary)
        workdir.mkdir(parents=True, exist_ok=True)
        rows = [round_trip(workdir, *case) for case in CASES]
    print("| format | backbone | outside tensors | max diff picat->outside->picat | "
          "max diff outside->picat->outside | max diff of features |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
